# Usage: python tools/edit_variants.py CASES.jsonl INDEX VARIANTS.json OUT.jpg [--threads N]
"""Edit one case of a case file several ways and put the results side by side.

VARIANTS.json is a list of {"name", "settings": {EditSettings fields}, "prompts": [...]}; with
"prompts" the edit is guided by exactly those texts instead of the (ensembled) case prompt.
The scene's model is trained or taken from the editor cache, as `rsgen eval edit` does. Prints
one JSON line per variant: the prompt's CLIP score before/after under rs-clip and
rs-clip-judge, the seconds, and the texts that guided."""

import argparse
import json
import time

import numpy as np
import torch
from PIL import Image, ImageDraw

from rsgen.io.rgb import read_rgb_uint8
from rsgen.pipelines.edit_eval import read_cases, shrink
from rsgen.pipelines.editor import Editor, EditSettings, prompt_scores, scoring_models
from rsgen.pipelines.paraphrase import ParaphraseResult

LABEL = 14


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases")
    parser.add_argument("index", type=int)
    parser.add_argument("variants")
    parser.add_argument("out")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    case = read_cases(args.cases)[args.index]
    with open(args.variants) as file:
        variants = json.load(file)
    image, roi = shrink(read_rgb_uint8(case.image), case.roi, 256)
    editor = Editor.fit(image, progress=False)
    scorers = scoring_models()
    tiles = [Image.fromarray(image)]
    for variant in variants:
        texts = variant.get("prompts")
        if texts:
            editor.prompts_for = lambda *_, texts=texts: ParaphraseResult(list(texts), "offline")
        else:
            editor.prompts_for = lambda *a, **k: Editor.prompts_for(editor, *a, **k)
        tic = time.perf_counter()
        result = editor.edit(
            case.prompt, roi=roi, seed=0, settings=EditSettings(**variant.get("settings", {}))
        )
        scores = prompt_scores(image, np.asarray(result.image), case.prompt, result.changed, scorers)
        row = {"name": variant["name"], "scores": scores, "seconds": round(time.perf_counter() - tic, 1)}
        print(json.dumps({**row, "prompts": result.prompts}), flush=True)
        tiles.append(result.image)
    width, height = tiles[0].size
    sheet = Image.new("RGB", (width * len(tiles), height + LABEL), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (tile, name) in enumerate(zip(tiles, ["input"] + [v["name"] for v in variants], strict=True)):
        sheet.paste(tile, (i * width, LABEL))
        draw.text((i * width + 2, 1), name, fill="black")
    sheet.save(args.out, quality=90)


if __name__ == "__main__":
    main()
