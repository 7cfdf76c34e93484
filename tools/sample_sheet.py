# Usage: python tools/sample_sheet.py MODEL [NAME=MODEL ...] --prompts FILE [-n 4] [--seed 0] --out SHEET.jpg
"""A labelled sheet of text-to-image samples: one row per prompt (the prompt written on the left),
``n`` images per model side by side (a header names each model). Every prompt's images are what
``rsgen generate PROMPT -n N --seed S --model MODEL`` writes, so the sheet can be reproduced image
by image; with several models (the Table 3 ablation) it compares them on the same prompts and seeds."""

import argparse
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw

from rsgen.pipelines import TextToImage

LABEL_WIDTH, HEADER, GAP = 230, 22, 4


def parse_model(argument: str) -> tuple[str, str]:
    name, sep, path = argument.partition("=")
    return (name, path) if sep else (Path(argument).name or argument, argument)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", nargs="+", help="pipeline folders or shipped names, optionally NAME=PATH")
    parser.add_argument("--prompts", required=True, help="a text file, one prompt per line")
    parser.add_argument("-n", type=int, default=4, help="images per prompt and model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", required=True, help="the sheet to write (.jpg or .png)")
    args = parser.parse_args()
    prompts = [line.strip() for line in Path(args.prompts).read_text().splitlines() if line.strip()]
    models = [parse_model(m) for m in args.models]
    columns: list[list[list[Image.Image]]] = []  # model → prompt → images
    for _, path in models:
        pipe = TextToImage.from_pretrained(path, device="cpu", progress=False)
        columns.append([pipe(p, num_images=args.n, seed=args.seed, steps=args.steps).images for p in prompts])
        del pipe
    size = columns[0][0][0].width
    block = args.n * (size + GAP) + GAP
    width, height = LABEL_WIDTH + len(models) * block, HEADER + len(prompts) * (size + GAP)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for m, (name, _) in enumerate(models):
        draw.text((LABEL_WIDTH + m * block + GAP, 5), name, fill="black")
    for row, prompt in enumerate(prompts):
        top = HEADER + row * (size + GAP)
        draw.multiline_text((6, top + size // 3), "\n".join(textwrap.wrap(prompt, 34)), fill="black")
        for m, images in enumerate(columns):
            for i, image in enumerate(images[row]):
                sheet.paste(image, (LABEL_WIDTH + m * block + GAP + i * (size + GAP), top))
    sheet.save(args.out, quality=90)
    print(args.out)


if __name__ == "__main__":
    main()
