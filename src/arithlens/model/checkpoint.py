"""Checkpoints: ours are `<dir>/model.safetensors` + `<dir>/model.json`; TransformerLens `.pth` state dicts load safely.

The JSON sidecar holds `{"format", "spec": ModelSpec.to_dict(), ...caller's keys such as "training",
"accuracy"}`; the safetensors header carries the spec too, so a lone `.safetensors` file still loads.
A `.pth` is read with `torch.load(weights_only=True)` (no code runs) and its spec comes from the file
name (`add_d6_l2_h3_t15K_s372001.pth`) with the sizes the name lacks read from the tensors, or from
the tensor shapes alone. Every problem is a one-line CheckpointError naming the file or the tensor.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from arithlens.errors import ArithLensError, CheckpointError, ConflictError, MissingCheckpointError, ParseError
from arithlens.io import write_atomic  # noqa: F401  (kept importable from here for older callers)
from arithlens.model.spec import ModelSpec
from arithlens.model.transformer import HookedTransformer

FORMAT = "arithlens-checkpoint/1"
WEIGHTS_FILE, SIDECAR_FILE = "model.safetensors", "model.json"
TORCH_SUFFIXES = (".pth", ".pt")
# TransformerLens attention buffers: constants, not weights.
IGNORED_SUFFIXES = (".attn.IGNORE", ".attn.mask")


@dataclass(frozen=True)
class Checkpoint:
    model: HookedTransformer
    spec: ModelSpec
    path: Path
    spec_source: str  # "argument", "sidecar", "safetensors header", "file name" or "tensor shapes"
    extra: dict[str, Any] = field(default_factory=dict)  # the sidecar's other keys ("training", "accuracy", ...)


def save_checkpoint(
    model: HookedTransformer, spec: ModelSpec | None, out_dir: str | os.PathLike, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write `out_dir/model.safetensors` and `out_dir/model.json`, each atomically; returns `out_dir`."""
    spec = model.spec if spec is None else spec
    extra = dict(extra or {})
    for reserved in ("format", "spec"):
        if reserved in extra:
            raise ArithLensError(f"checkpoint extra may not set {reserved!r}")
    try:
        sidecar = json.dumps({"format": FORMAT, "spec": spec.to_dict(), **extra}, indent=2) + "\n"
    except (TypeError, ValueError) as exc:
        raise ArithLensError(f"checkpoint extra is not JSON-serialisable: {exc}") from None
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    check_state_dict(state, spec)
    header = {"format": FORMAT, "spec": json.dumps(spec.to_dict())}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / WEIGHTS_FILE, safetensors_canonical(state, header))
    write_atomic(out / SIDECAR_FILE, sidecar.encode())
    return out


def _hooked_layout(state: dict[str, torch.Tensor], spec: ModelSpec | str | None, p: Path) -> dict[str, torch.Tensor]:
    """`state` in HookedTransformer's layout: a TransformerLens 4 bridge's own `state_dict()` is converted (its flat
    weights do not say how many heads there are, so the model name, from `spec` or the file name, must)."""
    from arithlens.model.tl_adapter import hooked_state_dict, is_bridge_state_dict  # TL itself is not needed

    if not is_bridge_state_dict(state):
        return state
    named = spec if isinstance(spec, ModelSpec) else _name_spec(spec or p.stem)
    if named is None:
        raise CheckpointError(f"'{p}' is a TransformerBridge state dict, whose weights do not say how many heads the "
                              "model has, and its file name is not a model name; pass --spec NAME (spec=NAME), e.g. "
                              "mix_d6_l3_h4_t10K_s372001")
    return hooked_state_dict(state, named.n_heads)


def load_checkpoint(
    path: str | os.PathLike,
    *,
    spec: ModelSpec | str | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    allow_partial: bool = False,
) -> Checkpoint:
    """Load a checkpoint directory, a `.safetensors` file or a TransformerLens `.pth` state dict.

    `spec` (a ModelSpec or a model name) overrides whatever the files say; sizes missing from a name are read
    from the tensors. Without it nothing is guessed: a model card, the weights' header and a file name that is a
    model name must agree (ConflictError naming both). A snapshot of an unfinished training run (its card says
    `"partial": true`) is refused unless `allow_partial` (for inspecting checkpoints)."""
    p = Path(path)
    if not p.exists():
        raise MissingCheckpointError(f"checkpoint '{p}' does not exist")
    extra: dict[str, Any] = {}
    found: ModelSpec | None = None
    if p.is_dir() or p.suffix == ".safetensors":
        weights = p / WEIGHTS_FILE if p.is_dir() else p
        sidecar = p / SIDECAR_FILE if p.is_dir() else p.with_suffix(".json")
        state, header = _read_safetensors(weights)
        in_header = None
        if "spec" in header:
            what = f"header of '{weights}'"
            in_header = _spec_from(_json(header["spec"], what), what)
        if sidecar.is_file():
            data = _read_sidecar(sidecar)
            found, source = _spec_from(data.get("spec"), f"sidecar '{sidecar}'"), "sidecar"
            extra = {k: v for k, v in data.items() if k not in ("format", "spec")}
            if spec is None and in_header is not None:
                _agree(found, f"the model card '{sidecar}'", in_header, f"the header of '{weights}'")
        elif in_header is not None:
            found, source = in_header, "safetensors header"
    elif p.suffix in TORCH_SUFFIXES:
        weights, state = p, _read_torch(p)
        state = _hooked_layout(state, spec, p)
    else:
        raise CheckpointError(f"checkpoint '{p}' is not a directory, .safetensors or {'/'.join(TORCH_SUFFIXES)} file")
    if spec is not None:
        found, source = (spec if isinstance(spec, ModelSpec) else spec_from_state_dict(state, name=spec)), "argument"
    elif found is None:
        try:
            found, source = spec_from_state_dict(state, name=weights.stem), "file name"
        except ParseError:
            # The shapes give the sizes but not the operation: guessing it (ADD) made a mixed model test ADD only.
            raise CheckpointError(
                f"cannot tell which operation '{p}' does: it has no {SIDECAR_FILE} and its file name is not a model "
                "name; give the model name (`arithlens convert FILE DIR --spec NAME`, e.g. NAME "
                f"mix_d6_l3_h4_t12K_s372001, or name the file so) or add a {SIDECAR_FILE}") from None
    elif p.is_file():
        named = _name_spec(weights.stem)
        if named is not None and named.base_name != found.base_name:
            what = "model card" if source == "sidecar" else "header"
            raise ConflictError(f"the file name '{p.name}' says {named.base_name} but its {what} says "
                                f"{found.base_name}: rename the file or load it with spec=NAME (--spec)")
    training = extra.get("training")
    if isinstance(training, dict) and training.get("partial") and not allow_partial:
        raise CheckpointError(
            f"checkpoint '{p}' is a snapshot of an unfinished training run (step {training.get('steps', '?')}), not "
            f"a finished model: continue it with `arithlens train --resume --out {p}` (or load it with "
            "allow_partial=True to inspect it)")
    model = model_from_state_dict(state, found, device=device, dtype=dtype)
    return Checkpoint(model=model, spec=found, path=p, spec_source=source, extra=extra)


def _agree(a: ModelSpec, a_source: str, b: ModelSpec, b_source: str) -> None:
    """Two sources of one model's spec must say the same; else a ConflictError naming both and a field."""
    if a == b:
        return
    da, db = a.to_dict(), b.to_dict()
    field_name = next((k for k in da if k != "name" and da[k] != db.get(k)), "name")
    raise ConflictError(f"{a_source} says {field_name} {da.get(field_name)!r} ({a.name}) but {b_source} says "
                        f"{db.get(field_name)!r} ({b.name}): nothing is guessed; fix the card or load with "
                        "spec=NAME (--spec)")


def _name_spec(stem: str) -> ModelSpec | None:
    """The spec a file name states, when the name is a model name."""
    try:
        return ModelSpec.parse(stem)
    except ArithLensError:
        return None


def convert_checkpoint(
    in_path: str | os.PathLike, out_dir: str | os.PathLike, *, spec: ModelSpec | str | None = None
) -> Path:
    """`arithlens convert IN.pth OUT_DIR`: load any checkpoint and save it in our format; returns `out_dir`."""
    ck = load_checkpoint(in_path, spec=spec)
    extra = {**ck.extra, "converted_from": Path(in_path).name, "spec_source": ck.spec_source}
    return save_checkpoint(ck.model, ck.spec, out_dir, extra)


# ---------------------------------------------------------------------------------------------------
# State dicts


def spec_from_state_dict(state: Mapping[str, Tensor], *, name: str | None = None) -> ModelSpec:
    """The spec of a TransformerLens-layout state dict: from `name` if given (sizes it lacks from the
    tensors), else from the shapes alone (operation, steps and seed then keep their defaults)."""
    d_model = _shape(state, "embed.W_E")[1]
    n_ctx = _shape(state, "pos_embed.W_pos")[0]
    n_heads, _, d_head = _shape(state, "blocks.0.attn.W_Q")
    d_mlp = _shape(state, "blocks.0.mlp.W_in")[1]
    if name is not None:
        return ModelSpec.parse(name, d_model=d_model, d_head=d_head, d_mlp=d_mlp)
    layers = {int(m[1]) for key in state if (m := re.match(r"blocks\.(\d+)\.", key))}
    if layers != set(range(len(layers))):
        raise CheckpointError(f"checkpoint blocks are numbered {sorted(layers)}, not 0..{len(layers) - 1}")
    if n_ctx < 7 or (n_ctx - 4) % 3:
        raise CheckpointError(f"checkpoint tensor 'pos_embed.W_pos' has n_ctx {n_ctx}, not 3 * n_digits + 4")
    try:
        return ModelSpec(
            n_digits=(n_ctx - 4) // 3,
            n_layers=len(layers),
            n_heads=n_heads,
            d_model=d_model,
            d_head=d_head,
            d_mlp=d_mlp,
        )
    except ArithLensError as exc:
        raise CheckpointError(f"checkpoint shapes give no valid model: {exc}") from None


def check_state_dict(state: Mapping[str, Tensor], spec: ModelSpec) -> dict[str, Tensor]:
    """The weights of `state` (buffers dropped) if every tensor `spec` needs is there with its shape."""
    expected = {k: tuple(v.shape) for k, v in HookedTransformer(spec, device="meta").state_dict().items()}
    for key, shape in expected.items():
        if key not in state:
            raise CheckpointError(f"checkpoint lacks tensor {key!r} of shape {shape} for {spec.name}")
        got = tuple(state[key].shape)
        if got != shape:
            raise CheckpointError(f"checkpoint tensor {key!r} has shape {got}, expected {shape} for {spec.name}")
    unexpected = [k for k in state if k not in expected and not k.endswith(IGNORED_SUFFIXES)]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(f"checkpoint has unexpected tensor {unexpected[0]!r}{more} for {spec.name}")
    return {k: state[k] for k in expected}


def model_from_state_dict(
    state: Mapping[str, Tensor],
    spec: ModelSpec,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> HookedTransformer:
    """A model holding copies of the checked weights (no random init is paid for)."""
    weights = check_state_dict(state, spec)
    for key, t in weights.items():
        if not t.is_floating_point():
            raise CheckpointError(f"checkpoint tensor {key!r} has dtype {t.dtype}, not a float type")
        if not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise CheckpointError(f"checkpoint tensor {key!r} holds {bad} non-finite values (NaN or inf): the "
                                  "weights are broken; use an earlier checkpoint or retrain")
    model = HookedTransformer(spec, device="meta")
    copies = {k: t.detach().to(device=device, dtype=dtype).clone().contiguous() for k, t in weights.items()}
    model.load_state_dict(copies, assign=True)
    return model


def _shape(state: Mapping[str, Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"checkpoint lacks tensor {key!r}; is it a TransformerLens HookedTransformer state dict?")
    return tuple(state[key].shape)


# ---------------------------------------------------------------------------------------------------
# Files


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    if not path.is_file():
        raise MissingCheckpointError(f"checkpoint weights '{path}' do not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types, and OSError
        raise CheckpointError(f"checkpoint '{path}' is corrupt or unreadable: {_first_line(exc)}") from None


def _read_torch(path: Path) -> dict[str, Tensor]:
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (PK..); older files are a bare pickle (protocol byte 0x80) or a legacy
    # tar. Anything else is not a PyTorch file at all, whatever the weights_only loader reports about it.
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" or _is_tar(path)):
        raise CheckpointError(f"checkpoint '{path}' is corrupt or not a safe state dict: it is not a PyTorch file at "
                              "all (neither a zip archive nor a pickle); check that it is the file you meant")
    try:
        with warnings.catch_warnings():  # a legacy .pth makes torch warn on two lines before our one-line error
            warnings.simplefilter("ignore")
            state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # pickle, zip and weights_only errors alike
        reason = _first_line(exc)
        if "Weights only load failed" in str(exc):
            reason = ("it is a pickle that holds Python objects, which a safe (weights_only) load refuses; "
                      "save a plain state dict of tensors (torch.save(model.state_dict(), ...))")
        raise CheckpointError(f"checkpoint '{path}' is corrupt or not a safe state dict: {reason}") from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"checkpoint '{path}' holds a {type(state).__name__}, not a state dict of tensors")
    return dict(state)


def _is_tar(path: Path) -> bool:
    import tarfile

    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _read_sidecar(path: Path) -> dict[str, Any]:
    data = _json(path.read_text(encoding="utf-8"), f"sidecar '{path}'")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"sidecar '{path}' is not an {FORMAT} file")
    return data


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CheckpointError(f"{what} is not valid JSON: {exc}") from None


def _spec_from(data: Any, what: str) -> ModelSpec:
    try:
        return ModelSpec.from_dict(data)
    except (ArithLensError, TypeError) as exc:
        raise CheckpointError(f"{what} has a bad spec: {_first_line(exc)}") from None


def safetensors_canonical(tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> bytes:
    """safetensors bytes that depend only on the tensors and metadata: the library writes its header's maps in a
    per-process random order (a Rust HashMap), so the same weights saved twice differed in their header bytes.
    Here the header is rewritten with the metadata keys sorted and the tensors in data order, in the same
    number of bytes (padded with spaces, as the format allows), so equal weights give equal files."""
    data = safetensors_bytes(dict(tensors), metadata=dict(metadata))
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    ordered: dict[str, Any] = {} if meta is None else {"__metadata__": dict(sorted(meta.items()))}
    ordered.update(sorted(header.items(), key=lambda kv: (kv[1]["data_offsets"][0], kv[0])))
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > n:  # the library escaped more tersely than json.dumps: keep its bytes
        return data
    return data[:8] + text + b" " * (n - len(text)) + data[8 + n :]


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # some torch errors carry terminal colours
    return text.splitlines()[0] if text else type(exc).__name__
