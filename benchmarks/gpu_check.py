"""The GPU check: the published settings at the real model size, on a randomly initialised model.

What it measures, with nothing downloaded (run it through ``benchmarks/gpu_check.sh``):

1. builds LLaVA-1.5-7B from its real configuration (CLIP ViT-L/14 at 336 px, 576 image tokens,
   the 2-layer GELU projector, a 32-layer 4096-wide Llama with a 32,064-token vocabulary) at its
   random initialisation, with a tokenizer trained on the demo benchmark's own text (the weights'
   shapes and the sequence lengths are what cost memory and time, not what the weights know);
2. runs ``steps`` optimizer steps of po+pd and kl+pd through the library's own ``unlearn`` with the
   published LoRA settings (r 32, alpha 256, projector trained), bf16 weights on a GPU and
   gradient checkpointing, and reports peak GPU memory and seconds per step;
3. generates the published protocol (K = 3 sampled answers per harmful question, T 1.0, top-p
   0.9, top-k 50, up to 512 new tokens, system sentence) for ``prompts`` prompts of the demo's
   val split with the ``hf`` backend and reports tokens/s against the memory-bandwidth limit:
   each decoding step reads every weight of the language model once, so a call of B sequences
   can decode at most ``B x bandwidth / weight bytes`` tokens/s (KV-cache reads make the real
   limit lower still);
4. if the installed transformers builds Qwen2.5-VL-7B, builds it too and reports its parameter
   count and one LoRA training step's peak memory on a synthetic batch.

``--dry-run`` runs every step on the CPU with tiny widths and depths (same code paths, same
image and sequence shapes, a few steps and prompts) in well under a minute; a test runs it.
Writes a JSON summary (``--out``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

# Peak memory bandwidth (bytes/s) of common data-centre GPUs, from their vendors' data sheets;
# --bandwidth-gbs gives any other.
BANDWIDTH = {
    "H200": 4.8e12,
    "H100 NVL": 3.9e12,
    "H100 PCIe": 2.0e12,
    "H100": 3.35e12,
    "A100-SXM4-80GB": 2.039e12,
    "A100": 1.555e12,
    "L40S": 0.864e12,
}


@dataclass(frozen=True)
class Dims:
    vision_hidden: int
    vision_intermediate: int
    vision_layers: int
    vision_heads: int
    projection_dim: int
    text_hidden: int
    text_intermediate: int
    text_layers: int
    text_heads: int
    vocab_size: int = 32064
    image_size: int = 336
    patch_size: int = 14


# llava-hf/llava-1.5-7b-hf's config.json
LLAVA_15_7B = Dims(1024, 4096, 24, 16, 768, 4096, 11008, 32, 32)
# the same structure, tiny (the dry run): image and sequence shapes as the real model's
LLAVA_DRY = Dims(32, 64, 2, 2, 32, 64, 128, 2, 4, vocab_size=4096)


def log(text: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def llava_config(dims: Dims, *, image_token: int = 32000, pad: int = 32001, bos: int = 1, eos: int = 2):
    """LLaVA-1.5's configuration at ``dims`` (with the real dims, llava-hf/llava-1.5-7b-hf's)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(
        hidden_size=dims.vision_hidden,
        intermediate_size=dims.vision_intermediate,
        num_hidden_layers=dims.vision_layers,
        num_attention_heads=dims.vision_heads,
        image_size=dims.image_size,
        patch_size=dims.patch_size,
        projection_dim=dims.projection_dim,
    )
    text = LlamaConfig(
        vocab_size=dims.vocab_size,
        hidden_size=dims.text_hidden,
        intermediate_size=dims.text_intermediate,
        num_hidden_layers=dims.text_layers,
        num_attention_heads=dims.text_heads,
        num_key_value_heads=dims.text_heads,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        pad_token_id=pad,
        bos_token_id=bos,
        eos_token_id=eos,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token,
        image_seq_length=(dims.image_size // dims.patch_size) ** 2,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )


def build_llava(dims: Dims, data: Path, out: Path, device: torch.device, dtype: torch.dtype) -> dict:
    """Save a randomly initialised LLaVA-1.5 of ``dims`` with a processor, as ``unlearn`` loads one."""
    from transformers import LlavaForConditionalGeneration

    from safeeraser.models.families.llava import SPECIAL, build_processor, corpus, train_tokenizer
    from safeeraser.models.tiny import demo_texts, vanilla_examples
    from safeeraser.models.tiny_parts import TinySize

    tokenizer = train_tokenizer(corpus(demo_texts(vanilla_examples(data))), 4096)
    size = TinySize(  # only the processor's fields matter here
        image_size=dims.image_size,
        patch_size=dims.patch_size,
        vision_hidden=0,
        vision_layers=0,
        vision_heads=0,
        text_hidden=0,
        text_layers=0,
        text_heads=0,
        text_intermediate=0,
        vocab_size=0,
        steps=0,
        lr=0.0,
        batch_per_view=0,
    )
    processor = build_processor(tokenizer, size)
    config = llava_config(
        dims,
        image_token=tokenizer.convert_tokens_to_ids(SPECIAL["image"]),
        pad=tokenizer.pad_token_id,
        bos=tokenizer.bos_token_id,
        eos=tokenizer.eos_token_id,
    )
    began = time.perf_counter()
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default)
    for key, value in (
        ("pad_token_id", tokenizer.pad_token_id),
        ("eos_token_id", tokenizer.eos_token_id),
        ("bos_token_id", tokenizer.bos_token_id),
    ):
        setattr(model.generation_config, key, value)
    built = time.perf_counter() - began
    model.save_pretrained(out)
    processor.save_pretrained(out)
    parameters = sum(p.numel() for p in model.parameters())
    # what one decoding step reads: every decoder layer, the final norm and the output head (the
    # vision tower and projector run once per prompt; the embedding reads one row per sequence)
    decode = sum(
        p.numel() * p.element_size()
        for n, p in model.named_parameters()
        if not any(k in n for k in ("vision_tower", "multi_modal_projector", "embed_tokens"))
    )
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "parameters": parameters,
        "decode_weight_bytes": decode,
        "build_seconds": round(built, 1),
        "save_seconds": round(time.perf_counter() - began - built, 1),
        "config": {
            "vision_hidden": dims.vision_hidden,
            "vision_layers": dims.vision_layers,
            "text_hidden": dims.text_hidden,
            "text_layers": dims.text_layers,
            "vocab": dims.vocab_size,
            "image_tokens": (dims.image_size // dims.patch_size) ** 2,
        },
    }


def val_subset(data: Path, prompts: int) -> int:
    """Keep the first val records that make at least ``prompts`` prompts; returns how many prompts."""
    from safeeraser.data.records import load_split

    path = data / "all_val.json"
    records = json.loads(path.read_text())
    keep = count = 0
    for record in load_split(data, "val").records:
        if count >= prompts:
            break
        count += 2 * len(record.unsafe_pairs) + len(
            record.unharm_pairs()
        )  # K-answer + harmless-image prompts, UnharmPairs
        keep += 1
    path.write_text(json.dumps(records[:keep], indent=1))
    return count


def unlearn_steps(
    model: Path, data: Path, work: Path, method: str, steps: int, batch_size: int, device: torch.device
) -> dict:
    from safeeraser.unlearn.config import resolve_config
    from safeeraser.unlearn.trainer import unlearn

    overrides = {
        "max_steps": steps,
        "batch_size": batch_size,
        "grad_accum": 1,
        "gradient_checkpointing": True,
        "eval_every": 0,
        "checkpoint_every": 0,
    }
    config = resolve_config(overrides=[overrides])
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    result = unlearn(str(model), data, method, work / method.replace("+", "_"), config, progress=False)
    total = time.perf_counter() - began
    rows = [json.loads(line) for line in (result.out / "log.jsonl").read_text().splitlines()]
    return {
        "method": method,
        "steps": result.steps,
        "batch_size": batch_size,
        "lora": {"r": config.lora.r, "alpha": config.lora.alpha, "train_projector": config.lora.train_projector},
        "gradient_checkpointing": True,
        "dtype": "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32",
        "seconds_per_step": round(result.seconds / max(result.steps, 1), 3),
        "seconds_with_load": round(total, 1),
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
        "first_step": rows[0] if rows else None,
        "last_step": rows[-1] if rows else None,
    }


def generation(
    model: Path,
    data: Path,
    work: Path,
    *,
    max_new_tokens: int,
    batch_size: int,
    model_info: dict,
    bandwidth: float | None,
    device: torch.device,
) -> dict:
    from safeeraser.generate.predictions import generate_predictions, protocol_settings

    settings = protocol_settings("published", max_new_tokens=max_new_tokens, batch_size=batch_size)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    meta = generate_predictions(str(model), data, "val", work / "predictions_val.json", settings, progress=False)
    out = {
        "protocol": settings.label(),
        "prompts": meta["prompts"],
        "batch_size": batch_size,
        "final_batch_size": meta.get("final_batch_size"),
        "oom_backoffs": meta.get("oom_backoffs"),
        "generated_tokens": meta["generated_tokens"],
        "seconds_with_load": meta["seconds"],
        "tokens_per_second": meta["tokens_per_second"],
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
    }
    if bandwidth:
        steps_bound = bandwidth / model_info["decode_weight_bytes"]
        sequences = meta.get("final_batch_size") or batch_size
        out.update(
            bandwidth_bytes_per_second=bandwidth,
            weight_bytes_per_decode_step=model_info["decode_weight_bytes"],
            decode_steps_per_second_limit=round(steps_bound, 1),
            tokens_per_second_limit=round(steps_bound * sequences, 1),
            fraction_of_limit=round(meta["tokens_per_second"] / (steps_bound * sequences), 3)
            if meta["tokens_per_second"]
            else None,
        )
    return out


def qwen25_vl(dry: bool, device: torch.device, dtype: torch.dtype) -> dict:
    """Qwen2.5-VL-7B from its configuration, if this transformers builds it: parameters and one LoRA step."""
    try:
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    except ImportError as e:
        return {"skipped": f"transformers has no Qwen2.5-VL ({e})"}
    from peft import LoraConfig, get_peft_model

    from safeeraser.unlearn.trainer import _checkpoint_activations

    if dry:
        text = dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=152064,
        )
        vision = dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, fullatt_block_indexes=[1]
        )
    else:  # Qwen/Qwen2.5-VL-7B-Instruct's config.json
        text = dict(
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            vocab_size=152064,
        )
        vision = dict(
            depth=32,
            hidden_size=1280,
            intermediate_size=3420,
            num_heads=16,
            out_hidden_size=3584,
            fullatt_block_indexes=[7, 15, 23, 31],
        )
    try:
        mrope = [2, 3, 3] if dry else [16, 24, 24]  # halves of the head dimension (16 or 128) for time, height, width
        config = Qwen2_5_VLConfig(
            text_config={
                **text,
                "max_position_embeddings": 4096,
                "rope_scaling": {"type": "mrope", "mrope_section": mrope},
            },
            vision_config={
                **vision,
                "patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
                "window_size": 112,
            },
        )
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with device:
                model = Qwen2_5_VLForConditionalGeneration(config)
        finally:
            torch.set_default_dtype(default)
        parameters = sum(p.numel() for p in model.parameters())
        model = get_peft_model(
            model,
            LoraConfig(
                r=32,
                lora_alpha=256,
                target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
            ),
        )
        _checkpoint_activations(model.base_model.model)
        model.train()
        # one 336x336 image: a 24x24 grid of 14-px patches, merged 2x2 into 144 tokens, then 64 text tokens
        grid = torch.tensor([[1, 24, 24]], device=device)
        pixels = torch.randn(24 * 24, 3 * 2 * 14 * 14, device=device, dtype=dtype)
        ids = torch.randint(0, 1000, (1, 144 + 64), device=device)
        ids[0, :144] = config.image_token_id
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        began = time.perf_counter()
        loss = model(
            input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels, image_grid_thw=grid, labels=ids
        ).loss
        loss.backward()
        seconds = time.perf_counter() - began
        grads = sum(1 for p in model.parameters() if p.requires_grad and p.grad is not None)
        return {
            "parameters": parameters,
            "lora_step_seconds": round(seconds, 3),
            "lora_parameters_with_grad": grads,
            "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
            "note": "one forward+backward of a synthetic 1-image batch, LoRA r=32 with gradient checkpointing (not the unlearning objective)",
        }
    except Exception as e:  # a transformers that cannot build or run it: said, not fatal
        return {"skipped": f"{type(e).__name__}: {str(e)[:300]}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU, tiny dims, a few steps and prompts: shapes and code paths only"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_check.json"))
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for data, model and runs (default: a temporary folder)"
    )
    parser.add_argument("--steps", type=int, default=None, help="unlearning steps per method (default 20; dry run 2)")
    parser.add_argument(
        "--train-batch-size",
        type=int,
        default=None,
        help="examples per view and step (default 8, as published per micro-step; dry run 2)",
    )
    parser.add_argument("--prompts", type=int, default=None, help="generation prompts (default 512; dry run 24)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default 512 (published); dry run 8")
    parser.add_argument(
        "--gen-batch-size", type=int, default=None, help="sequences per generate call (default 96; dry run 16)"
    )
    parser.add_argument(
        "--bandwidth-gbs",
        type=float,
        default=None,
        help="the GPU's peak memory bandwidth in GB/s (known GPUs are looked up)",
    )
    parser.add_argument("--skip-qwen", action="store_true")
    args = parser.parse_args(argv)

    import tempfile

    import transformers

    from safeeraser.data.demo import make_demo
    from safeeraser.models.loading import quiet_transformers

    quiet_transformers()
    dry = args.dry_run
    device = torch.device("cuda" if torch.cuda.is_available() and not dry else "cpu")
    if not dry and device.type != "cuda":
        log("no CUDA device: run with --dry-run on a CPU")
        return 2
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    steps = args.steps or (2 if dry else 20)
    prompts = args.prompts or (24 if dry else 512)
    max_new_tokens = args.max_new_tokens or (8 if dry else 512)
    gen_batch = args.gen_batch_size or (16 if dry else 96)
    train_batch = args.train_batch_size or (2 if dry else 8)
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else None
    bandwidth = (
        args.bandwidth_gbs * 1e9
        if args.bandwidth_gbs
        else next((b for name, b in BANDWIDTH.items() if gpu and name in gpu), None)
    )
    summary: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "dry_run": dry,
        "device": gpu or "cpu",
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if gpu else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sections": {},
    }
    began = time.perf_counter()
    work_root = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    status = 0
    try:
        data, model = work_root / "data", work_root / "llava"
        if not (data / "all_val.json").exists():
            make_demo(data, images_per_category=3 if dry else 32)  # 32: over 512 val prompts
        summary["sections"]["data"] = {"val_prompts": val_subset(data, prompts)}
        log(f"building LLaVA-1.5-7B {'(dry-run dims) ' if dry else ''}on {device} in {dtype}")
        info = build_llava(LLAVA_DRY if dry else LLAVA_15_7B, data, model, device, dtype)
        summary["sections"]["llava_model"] = info
        log(f"{info['parameters']:,} parameters")
        for method in ("po+pd", "kl+pd"):
            log(f"unlearning {method}: {steps} steps")
            summary["sections"][f"unlearn_{method}"] = unlearn_steps(
                model, data, work_root / "runs", method, steps, train_batch, device
            )
            log(json.dumps(summary["sections"][f"unlearn_{method}"]))
        log(f"generating {prompts} prompts, published protocol, {max_new_tokens} new tokens")
        summary["sections"]["generation"] = generation(
            model,
            data,
            work_root,
            max_new_tokens=max_new_tokens,
            batch_size=gen_batch,
            model_info=info,
            bandwidth=bandwidth,
            device=device,
        )
        log(json.dumps(summary["sections"]["generation"]))
        if not args.skip_qwen:
            import gc

            gc.collect()  # the LLaVA runs' models, before a second 7B model is built
            if device.type == "cuda":
                torch.cuda.empty_cache()
            log("Qwen2.5-VL-7B")
            summary["sections"]["qwen2_5_vl"] = qwen25_vl(dry, device, dtype)
            log(json.dumps(summary["sections"]["qwen2_5_vl"]))
    except Exception:
        summary["error"] = traceback.format_exc()[-3000:]
        log(summary["error"])
        status = 1
    summary["seconds"] = round(time.perf_counter() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    log(f"wrote {args.out} ({summary['seconds']} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
