# Usage: python tools/eval_tokenizer.py TOKENIZER_FOLDER OUT.jpg  (prints one JSON line)
"""Reconstruction PSNR/SSIM and codebook usage of a VQ tokenizer on the rsicd_aid150 test split
(centre 128 px crops of the 224 px scenes resized to 144), as the task's validation measures them."""

import json
import sys

import numpy as np
import torch
from PIL import Image

from rsgen.data.captions import read_caption_records
from rsgen.data.images import tensor_to_image
from rsgen.data.paths import resolve_data_path
from rsgen.data.scene_images import SceneImages
from rsgen.metrics import psnr, ssim
from rsgen.models.vq_tokenizer import VQTokenizer, codebook_usage

model = VQTokenizer.from_pretrained(sys.argv[1]).eval()
records = read_caption_records(resolve_data_path("rsicd_aid150"), "test")
images = SceneImages(records, 128, 144, augment=False, progress=False)
ps, ss, ids = [], [], []
with torch.no_grad():
    for chunk in images.fixed().split(32):
        rec, i, _ = model(chunk)
        ids.append(i)
        for a, b in zip(rec.float(), chunk, strict=True):
            x, y = tensor_to_image(a), tensor_to_image(b)
            ps.append(psnr(x, y))
            ss.append(ssim(x, y))
usage = codebook_usage(torch.cat(ids), model.codebook_size)
out = {
    "split": "test",
    "images": len(ps),
    "psnr": round(float(np.mean(ps)), 3),
    "ssim": round(float(np.mean(ss)), 4),
    "perplexity": round(usage["perplexity"], 1),
    "used_fraction": round(usage["used_fraction"], 4),
}
print(json.dumps(out))

with torch.no_grad():
    sample = images.fixed()[::58][:8]
    rec = model(sample)[0].float()
top = np.concatenate([tensor_to_image(x) for x in sample], 1)
bottom = np.concatenate([tensor_to_image(x) for x in rec], 1)
Image.fromarray(np.concatenate([top, bottom], 0)).save(sys.argv[2], quality=90)
