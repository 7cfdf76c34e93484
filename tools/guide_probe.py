# Usage: python tools/guide_probe.py CASES.jsonl [--model rs-clip rs-clip-judge] [--max-side 256]
"""Does an image–text model prefer a crude version of the wanted change to the unedited image?

For every case (JSON lines {image, prompt, roi}, as `rsgen eval edit` reads), the ROI is painted
over in a few crude ways (charred black, red-orange, muddy flood water, grey rubble, and a
brighter copy of itself as a control) and the prompt's CLIP score (100 · cos, on the ROI's box
grown by a quarter, as `rsgen eval edit` scores) is computed for each, under each model. One
JSON line per case and model: {case, model, before, gain per paint}.

A guide that scores every paint below the unedited image cannot steer an edit toward the
prompt: the ascent on its score leads elsewhere (see docs/editing.md)."""

import argparse
import json

import numpy as np

from rsgen.io.rgb import read_rgb_uint8
from rsgen.pipelines.edit_eval import read_cases, shrink
from rsgen.pipelines.editor import prompt_scores, scoring_models

PAINTS = {
    "charred": lambda roi, noise: 0.2 * roi + 8 * noise,
    "red_orange": lambda roi, noise: 0.3 * roi + np.array([160, 60, 10]) + 10 * noise,
    "flood_water": lambda roi, noise: 0.15 * roi + np.array([105, 95, 70]) + 6 * noise,
    "grey_rubble": lambda roi, noise: 0.2 * roi.mean(-1, keepdims=True) + 100 + 30 * noise,
    "brighter_control": lambda roi, noise: 1.4 * roi,
}


def painted(image: np.ndarray, roi: tuple[int, int, int, int], paint, rng) -> np.ndarray:
    x, y, w, h = roi
    out = image.astype(np.float32)
    noise = rng.standard_normal((h, w, 1)).astype(np.float32)
    out[y : y + h, x : x + w] = paint(out[y : y + h, x : x + w], noise)
    return out.clip(0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases")
    parser.add_argument("--model", nargs="+", default=["rs-clip", "rs-clip-judge"])
    parser.add_argument("--max-side", type=int, default=256)
    args = parser.parse_args()
    models = scoring_models(tuple(args.model))
    for case in read_cases(args.cases):
        image, roi = shrink(read_rgb_uint8(case.image), case.roi, args.max_side)
        changed = np.zeros(image.shape[:2], dtype=bool)
        x, y, w, h = roi
        changed[y : y + h, x : x + w] = True
        gains: dict[str, dict[str, float]] = {name: {} for name in models}
        before: dict[str, float] = {}
        for paint_name, paint in PAINTS.items():
            edited = painted(image, roi, paint, np.random.default_rng(0))
            for name, score in prompt_scores(image, edited, case.prompt, changed, models).items():
                if score is not None:
                    before[name] = score["before"]
                    gains[name][paint_name] = score["gain"]
        for name in models:
            if name in before:
                row = {"case": case.name, "prompt": case.prompt, "model": name, "before": before[name]}
                print(json.dumps({**row, "gain": gains[name]}), flush=True)


if __name__ == "__main__":
    main()
