"""``rsgen eval ...``: every evaluation command, each against its baseline.

``sr`` (PSNR/SSIM vs bicubic), ``retrieval`` and ``scene`` (the image–text model and the scene
classifier on a captions.jsonl split), ``fid`` and ``clip`` (distribution metrics and CLIP
score of generated images), ``t2i`` (text-to-image models on the test captions). Tables by
default, one JSON object on stdout with ``--json``; progress bars go to stderr. Every number is
named after the network it was computed on (``FD[efficientnet-lite0]``, ``FID[inception-v3]``,
``CLIPScore[rs-clip]``): only the Fréchet distance on the real Inception-v3 FID weights is
called FID.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsgen.cli.app import (
    CaptionDataOption,
    DeviceOption,
    GuidanceOption,
    ImageBatchOption,
    JsonOption,
    PrecisionOption,
    QuietOption,
    SplitOption,
    StepsOption,
    TruncationOption,
    check_scale,
    default_data,
    emit_json,
    eval_app,
)
from rsgen.cli.tables import format_number, print_metric_table, print_sr_table, print_t2i_table
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


@eval_app.command("sr")
def eval_sr_command(
    data: Annotated[
        Path | None, typer.Option(help="Folder of HR images [default: $RSGEN_DATA/RSSCN7/val]")
    ] = None,
    scale: Annotated[int, typer.Option("--scale", "-s", help="2 or 4.")] = 4,
    model: Annotated[
        str | None, typer.Option(help="Built-in model name or folder [default: degan-x<scale>]")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Evaluate only the first N images.")] = None,
    tile: Annotated[int | None, typer.Option(min=1, help="LR tile size [default: 256 / scale].")] = None,
    overlap: Annotated[int, typer.Option(min=0, help="LR tile overlap.")] = 4,
    device: DeviceOption = None,
    as_json: JsonOption = False,
    precision: PrecisionOption = "fp32",
    quiet: QuietOption = False,
) -> None:
    """PSNR/SSIM (RGB and Y, border = scale) of a model vs bicubic on HR images downscaled bicubically."""
    from rsgen.io import list_images
    from rsgen.metrics import evaluate_sr
    from rsgen.pipelines import SuperResolver

    check_scale(scale)
    folder = data or default_data("RSSCN7", "val")
    files = list_images(folder)[:limit]
    resolver = SuperResolver.from_pretrained(
        model or f"degan-x{scale}", scale=scale, device=device, tile=tile, overlap=overlap, bf16=precision
    )
    result = evaluate_sr(files, scale, resolver, resolver.name, progress=not (quiet or as_json))
    if as_json:
        emit_json({**result.to_dict(), "data": str(folder)})
    else:
        print_sr_table(result)


@eval_app.command("retrieval")
def eval_retrieval_command(
    data: CaptionDataOption = None,
    split: SplitOption = "test",
    model: Annotated[
        str, typer.Option(help="Image-text model: rs-clip, a model folder, or an open_clip weight file.")
    ] = "rs-clip",
    batch_size: ImageBatchOption = 32,
    device: DeviceOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Text->image and image->text Recall@1/5/10 and zero-shot scene accuracy (fractions in [0, 1])."""
    from rsgen.data.captions import read_caption_records
    from rsgen.device import resolve_device
    from rsgen.metrics.retrieval import evaluate_retrieval
    from rsgen.models.loading import load_image_text_model

    folder = data or default_data("rsicd_aid150")
    read_caption_records(folder, split)  # bad data fails before a model loads
    clip = load_image_text_model(model, resolve_device(device))
    result = evaluate_retrieval(clip, folder, split, batch_size, progress=not (quiet or as_json))
    report = {**result.to_dict(), "data": str(folder)}
    if as_json:
        emit_json(report)
        return
    counts = f"{result.n_images} images, {result.n_captions} captions"
    typer.echo(f"{result.model} on {folder} ({split}: {counts})")
    for direction in ("t2i", "i2t"):
        recalls = "  ".join(f"R@{k} {report[f'{direction}_r{k}']:.3f}" for k in (1, 5, 10))
        typer.echo(f"  {direction}: {recalls}")
    typer.echo(f"  zero-shot accuracy over {result.n_scenes} scenes: {result.zeroshot_acc:.3f}")


@eval_app.command("scene")
def eval_scene_command(
    data: CaptionDataOption = None,
    split: SplitOption = "test",
    model: Annotated[str, typer.Option(help="Scene classifier: rs-scene or a model folder.")] = "rs-scene",
    batch_size: ImageBatchOption = 32,
    device: DeviceOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Scene classification accuracy (overall and per scene) of rs-scene on a captions.jsonl split."""
    from rsgen.data.captions import read_caption_records
    from rsgen.device import resolve_device
    from rsgen.metrics.retrieval import evaluate_scene_classifier
    from rsgen.models.scene_classifier import SceneClassifier

    folder = data or default_data("rsicd_aid150")
    read_caption_records(folder, split)  # bad data fails before a model loads
    classifier = SceneClassifier.from_pretrained(model).to(resolve_device(device))
    result = evaluate_scene_classifier(classifier, folder, split, batch_size, progress=not (quiet or as_json))
    if as_json:
        emit_json({**result, "data": str(folder)})
        return
    typer.echo(f"{result['model']} on {folder} ({split}, {result['n_images']} images)")
    typer.echo(f"  accuracy {result['accuracy']:.3f}")
    worst = sorted(result["per_scene"].items(), key=lambda item: item[1])[:5]
    typer.echo("  weakest scenes: " + ", ".join(f"{scene} {acc:.2f}" for scene, acc in worst))


@eval_app.command("fid", help=FID_HELP)
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
    batch_size: ImageBatchOption = 32,
    device: DeviceOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    from rsgen.data.image_batches import image_paths
    from rsgen.device import resolve_device
    from rsgen.metrics.features import build_metric_extractor, validate_extractor_request
    from rsgen.metrics.generative import evaluate_generative

    device = resolve_device(device)
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
        emit_json(data)
        return
    rows = [(result.fd.label, format_number(result.fd.value))]
    if result.kid is not None:
        k = result.kid
        rows.append((f"{k.label} (subsets {k.subsets} x {k.subset_size})", f"{k.mean:.5f} ± {k.std:.5f}"))
    if result.inception is not None:
        i = result.inception
        rows.append((f"{i.label} ({i.splits} splits)", f"{i.mean:.3f} ± {format_number(i.std, 3)}"))
    caption = f"{result.fd.n_real} real ({real_dir}), {result.fd.n_fake} generated ({fake_dir})"
    print_metric_table(f"Generative metrics on {extractor.name} features", rows, caption)


@eval_app.command("clip", help=CLIP_HELP)
def eval_clip_command(
    image_dir: Annotated[Path, typer.Argument(help="Folder of images.")],
    captions: Annotated[Path, typer.Argument(help="Caption file: .jsonl or .txt (see above).")],
    model: Annotated[
        str, typer.Option(help="Image-text model: built-in name (rs-clip) or local CLIP weight file.")
    ] = "rs-clip",
    batch_size: ImageBatchOption = 32,
    device: DeviceOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    from rsgen.data.captions import read_captions
    from rsgen.device import resolve_device
    from rsgen.metrics.clipscore import clip_score
    from rsgen.models.loading import load_image_text_model

    device = resolve_device(device)
    if not image_dir.is_dir():
        raise RsgenError("image folder not found", image_dir)
    pairs = read_captions(captions, image_dir)  # fail fast on a bad caption file
    network = load_image_text_model(model, device)
    images = [p.path for p in pairs]
    lists = [list(p.captions) for p in pairs]
    result = clip_score(images, lists, network, batch_size=batch_size, device=device, progress=not quiet)
    data = {**result.to_dict(), "images": str(image_dir), "captions": str(captions)}
    if as_json:
        emit_json(data)
        return
    rows = [(result.label, f"{result.score:.3f}")]
    caption = (
        f"{result.n} images, {result.n_pairs} image-caption pairs "
        f"({result.n_clamped} with negative cosine, scored 0)"
    )
    print_metric_table(f"CLIP score on {result.model}", rows, caption)


T2I_HELP = """Text-to-image evaluation on the test captions (RSVQ-Diffusion, issue 12's Table 3).

One image per test image's first distinct caption (all 463 of rsicd_aid150's test split, or a
fixed seeded subset with --images N), per model and sampling seed; rows: the real test images
(resized to the model's image size) and each model (mean ± std over --seeds). Columns:
FD[rs-scene] and FD[efficientnet-lite0] to the real test images (the real row: to held-out
train images), IS[rs-scene], CLIPScore[rs-clip] against the caption, scene accuracy (share that
rs-scene assigns to the caption's scene), and the memorisation check: median cosine distance of
rs-scene features to the nearest training image, and the share of images closer to one than
the real test images' 5th percentile. See docs/text-to-image.md.

MODEL...: pipeline folders or built-in names (NAME=PATH names a row); --model adds more.
With -o OUT: OUT/images/*.png (OUT/images/<model>-seed<S>/ with several models or seeds),
their captions.jsonl, and OUT/eval.json (what --json prints).
"""


@eval_app.command("t2i", help=T2I_HELP)
def eval_t2i_command(
    models: Annotated[
        list[str] | None,
        typer.Argument(help="Text-to-image models [default: rsvq-cpu].", metavar="MODEL"),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", metavar="MODEL", help="Another model, NAME=PATH or PATH (repeatable)."),
    ] = None,
    data: CaptionDataOption = None,
    images: Annotated[
        int | None, typer.Option(help="Use a fixed seeded subset of N test images [default: all].")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed [default: 0].")] = None,
    seeds: Annotated[
        str | None, typer.Option(help="Several sampling seeds, e.g. 0,1: each row is their mean ± std.")
    ] = None,
    steps: StepsOption = None,
    guidance: GuidanceOption = 5.0,
    truncation: TruncationOption = None,
    batch: Annotated[int, typer.Option(help="Prompts sampled together.")] = 8,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Folder for the images and eval.json.")
    ] = None,
    device: DeviceOption = None,
    precision: PrecisionOption = "fp32",
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    from rsgen.pipelines.t2i_eval import T2IEvalSettings, evaluate_text_to_image, model_specs, parse_seeds

    if seed is not None and seeds is not None:
        raise RsgenError("give --seed or --seeds, not both")
    arguments = [*(models or []), *(model or [])]
    if not arguments:
        from rsgen.pipelines.text_to_image import DEFAULT_MODEL

        arguments = [DEFAULT_MODEL]
    settings = T2IEvalSettings(
        images=images,
        seeds=parse_seeds(seeds) if seeds is not None else (0 if seed is None else seed,),
        steps=steps,
        guidance=guidance,
        truncation=truncation,
        batch=batch,
    )
    folder = data or default_data("rsicd_aid150")
    report = evaluate_text_to_image(
        model_specs(arguments), folder, settings, output, device=device, bf16=precision, progress=not quiet
    )
    if as_json:
        emit_json(report)
    else:
        print_t2i_table(report)
