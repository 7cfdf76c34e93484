# Usage: python tools/eval_tokenizer.py TOKENIZER_FOLDER [MORE ...] --sheet OUT.jpg
#        (prints one JSON line per tokenizer)
"""Reconstruction PSNR/SSIM and codebook usage of VQ tokenizers on the rsicd_aid150 test split
(centre 128 px crops of the 224 px scenes resized to 144), as the task's validation measures them,
and a sheet of 8 test images (top row) above each tokenizer's reconstructions (one row each)."""

import argparse
import json

import numpy as np
import torch
from PIL import Image

from rsgen.data.captions import read_caption_records
from rsgen.data.images import tensor_to_image
from rsgen.data.paths import resolve_data_path
from rsgen.data.scene_images import SceneImages
from rsgen.metrics import psnr, ssim
from rsgen.models.vq_tokenizer import VQTokenizer, codebook_usage


@torch.no_grad()
def evaluate(model: VQTokenizer, images: torch.Tensor) -> dict:
    ps, ss, ids = [], [], []
    for chunk in images.split(32):
        rec, i, _ = model(chunk)
        ids.append(i)
        for a, b in zip(rec.float(), chunk, strict=True):
            x, y = tensor_to_image(a), tensor_to_image(b)
            ps.append(psnr(x, y))
            ss.append(ssim(x, y))
    usage = codebook_usage(torch.cat(ids), model.codebook_size)
    return {
        "split": "test",
        "images": len(ps),
        "psnr": round(float(np.mean(ps)), 3),
        "ssim": round(float(np.mean(ss)), 4),
        "perplexity": round(usage["perplexity"], 1),
        "used_fraction": round(usage["used_fraction"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("tokenizers", nargs="+", help="tokenizer folders (or shipped names)")
    parser.add_argument("--sheet", required=True, help="the reconstruction sheet to write (.jpg/.png)")
    args = parser.parse_args()
    records = read_caption_records(resolve_data_path("rsicd_aid150"), "test")
    images = SceneImages(records, 128, 144, augment=False, progress=False).fixed()
    sample = images[::58][:8]
    rows = [np.concatenate([tensor_to_image(x) for x in sample], 1)]
    for folder in args.tokenizers:
        model = VQTokenizer.from_pretrained(folder).float().eval()
        print(json.dumps({"tokenizer": folder, **evaluate(model, images)}), flush=True)
        with torch.no_grad():
            rows.append(np.concatenate([tensor_to_image(x) for x in model(sample)[0].float()], 1))
    Image.fromarray(np.concatenate(rows, 0)).save(args.sheet, quality=90)


if __name__ == "__main__":
    main()
