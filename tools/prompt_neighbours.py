# Usage: python tools/prompt_neighbours.py PROMPT [PROMPT ...] --against TEXT [TEXT ...] [--model rs-clip ...]
"""Where an image–text model puts editing prompts: the cosine similarity of each prompt's text
embedding to a set of reference texts (captions of the unedited scene, descriptions of the
wanted change), most similar first, one JSON line per model and prompt.

A guide whose training captions never name an event ("fire", "flood": RSICD has neither) can
only place the prompt near what it knows; if that is the unedited scene ("a fire in the forest"
near "many green trees in the forest"), guidance toward the prompt makes the scene more itself."""

import argparse
import json

import torch
from torch.nn import functional as F

from rsgen.models.loading import load_image_text_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prompts", nargs="+")
    parser.add_argument("--against", nargs="+", required=True, help="reference texts")
    parser.add_argument("--model", nargs="+", default=["rs-clip"], help="names, folders or files")
    args = parser.parse_args()
    for name in args.model:
        model = load_image_text_model(name)
        with torch.no_grad():
            prompts = F.normalize(model.encode_text(args.prompts).float(), dim=-1)
            refs = F.normalize(model.encode_text(args.against).float(), dim=-1)
        for prompt, row in zip(args.prompts, (prompts @ refs.T).tolist(), strict=True):
            ranked = sorted(zip(row, args.against, strict=True), reverse=True)
            print(
                json.dumps(
                    {"model": name, "prompt": prompt, "similar": [[round(s, 3), t] for s, t in ranked]}
                )
            )


if __name__ == "__main__":
    main()
