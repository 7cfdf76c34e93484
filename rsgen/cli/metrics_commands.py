"""``rsgen eval fid`` and ``rsgen eval clip``: distribution metrics and CLIP score from the shell.

Both print a small table, or with ``--json`` one flat JSON object on stdout; progress bars go to
stderr. Every number is named after the network it was computed on (``FD[efficientnet-lite0]``,
``FID[inception-v3]``, ``CLIPScore[rs-clip]``): only the Fréchet distance on the real
Inception-v3 FID weights is called FID.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rsgen.errors import RsgenError

FID_HELP = """Fréchet distance, KID and Inception score between two image folders.

FD and KID compare REAL_DIR with FAKE_DIR; IS is computed on FAKE_DIR. Folders are read
recursively (PNG/JPEG/TIFF, 8-bit 3-band RGB, any size: each image is resized to the
extractor's input), in batches, each image embedded once.

--json prints one flat object, keys named after the feature extractor X
(efficientnet-lite0, rs-scene or inception-v3):
"FD[X]" (called "FID[inception-v3]" on inception-v3: only that one is FID),
"KID[X]", "KID[X]_std", "kid_subsets", "kid_subset_size" (the size used: at most the
smaller set), "IS[X]", "IS[X]_std" (null with one split), "is_splits" (the number used),
"features", "weights", "n_real", "n_fake", "seed", "real", "fake". KID/IS keys are absent
with --no-kid/--no-is.
"""

CLIP_HELP = """CLIP score of images against captions: mean of 100 * max(cos(image, text), 0).

CAPTIONS is a .jsonl file, one object per line with "file" (relative to IMAGE_DIR) and
"caption", "prompt" or "captions" (a list: each image's score is the mean over its captions),
or a .txt file with one caption per line for the images of IMAGE_DIR in sorted order.

--json prints {"CLIPScore[<model>]", "model", "n" (images), "n_pairs", "n_clamped" (pairs
with a negative cosine, scored 0), "images", "captions"}.
"""


def _help(text: str) -> str:
    """Command help for typer's rich markup: paragraphs reflowed, ``[`` escaped (not markup)."""
    paragraphs = [" ".join(p.split()) for p in text.strip().split("\n\n")]
    return "\n\n".join(p.replace("[", "\\[") for p in paragraphs)


def _emit(data: dict[str, Any]) -> None:
    from rsgen.cli.main import emit_json

    emit_json(data)


def _print_table(title: str, rows: list[tuple[str, str]], caption: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # Labels such as FD[efficientnet-lite0] must not be read as rich markup tags.
    table = Table(title=escape(title), caption=escape(caption))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(escape(name), escape(value))
    Console().print(table)


def _check_device(device: str | None) -> Any:
    """The torch device for ``--device`` (CUDA when available if not given); one-line error if unusable."""
    from rsgen.device import resolve_device

    return resolve_device(device)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def eval_fid_command(
    real_dir: Annotated[Path, typer.Argument(help="Folder of real (reference) images.")],
    fake_dir: Annotated[Path, typer.Argument(help="Folder of generated images (IS is computed on it).")],
    features: Annotated[
        str, typer.Option(help="Feature extractor: efficientnet-lite0, rs-scene or inception-v3.")
    ] = "efficientnet-lite0",
    weights: Annotated[
        Path | None,
        typer.Option(
            "--inception-weights",
            "--weights",
            help="Local weights for --features: required for inception-v3 "
            "(pt_inception-2015-12-05-6726825d.pth); optional for the others.",
        ),
    ] = None,
    kid: Annotated[bool, typer.Option("--kid/--no-kid", help="Also compute KID.")] = True,
    inception: Annotated[bool, typer.Option("--is/--no-is", help="Also compute IS on FAKE_DIR.")] = True,
    kid_subsets: Annotated[int, typer.Option(min=1, help="KID: random subsets.")] = 100,
    kid_subset_size: Annotated[
        int, typer.Option(min=2, help="KID: subset size (clamped to the smaller set).")
    ] = 1000,
    is_splits: Annotated[int, typer.Option(min=1, help="IS: splits (at most half the images).")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the KID subsets and IS splits.")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 32,
    device: Annotated[str | None, typer.Option(help="cpu, cuda... [default: cuda if available]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    from rsgen.metrics.features import build_metric_extractor, validate_extractor_request
    from rsgen.metrics.generative import evaluate_generative, image_paths

    device = _check_device(device)
    validate_extractor_request(features, weights)
    real, fake = image_paths(real_dir), image_paths(fake_dir)  # fail fast on bad folders
    extractor = build_metric_extractor(features, weights)
    result = evaluate_generative(
        real,
        fake,
        extractor,
        kid=kid,
        inception=inception,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
        is_splits=is_splits,
        seed=seed,
        batch_size=batch_size,
        device=device,
        progress=not quiet,
    )
    data = {**result.to_dict(), "real": str(real_dir), "fake": str(fake_dir)}
    if as_json:
        _emit(data)
        return
    rows = [(result.fd.label, _fmt(result.fd.value))]
    if result.kid is not None:
        k = result.kid
        rows.append((f"{k.label} (subsets {k.subsets} x {k.subset_size})", f"{k.mean:.5f} ± {k.std:.5f}"))
    if result.inception is not None:
        i = result.inception
        rows.append((f"{i.label} ({i.splits} splits)", f"{i.mean:.3f} ± {_fmt(i.std, 3)}"))
    caption = f"{result.fd.n_real} real ({real_dir}), {result.fd.n_fake} generated ({fake_dir})"
    _print_table(f"Generative metrics on {extractor.name} features", rows, caption)


def _load_image_text_model(name: str, device: str) -> Any:
    from rsgen.models import image_text

    return image_text.load_image_text_model(name, device=device)


def eval_clip_command(
    image_dir: Annotated[Path, typer.Argument(help="Folder of images.")],
    captions: Annotated[Path, typer.Argument(help="Caption file: .jsonl or .txt (see above).")],
    model: Annotated[
        str, typer.Option(help="Image-text model: built-in name (rs-clip) or local CLIP weight file.")
    ] = "rs-clip",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 32,
    device: Annotated[str | None, typer.Option(help="cpu, cuda... [default: cuda if available]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    from rsgen.metrics.generative import clip_score, read_captions

    device = _check_device(device)
    if not image_dir.is_dir():
        raise RsgenError("image folder not found", image_dir)
    pairs = read_captions(captions, image_dir)  # fail fast on a bad caption file
    network = _load_image_text_model(model, device)
    images = [p.path for p in pairs]
    lists = [list(p.captions) for p in pairs]
    result = clip_score(images, lists, network, batch_size=batch_size, device=device, progress=not quiet)
    data = {**result.to_dict(), "images": str(image_dir), "captions": str(captions)}
    if as_json:
        _emit(data)
        return
    rows = [(result.label, f"{result.score:.3f}")]
    caption = (
        f"{result.n} images, {result.n_pairs} image-caption pairs "
        f"({result.n_clamped} with negative cosine, scored 0)"
    )
    _print_table(f"CLIP score on {result.model}", rows, caption)


def register(eval_app: typer.Typer) -> None:
    """Add ``fid`` and ``clip`` to the ``rsgen eval`` sub-app."""
    eval_app.command("fid", help=_help(FID_HELP))(eval_fid_command)
    eval_app.command("clip", help=_help(CLIP_HELP))(eval_clip_command)
