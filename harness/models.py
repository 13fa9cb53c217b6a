"""A model artifact: a TFLite/LiteRT flatbuffer on disk, identified by content and validated before use.

Validation runs three checks, cheapest first, so a bad file gets the most precise reason:
the file exists and is readable; it carries the TFLite file identifier ``TFL3`` at bytes 4..8;
the flatbuffer parses with the LiteRT schema and the runtime's verifier accepts it.
"""

from __future__ import annotations

import errno
import functools
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ModelError
from harness.hashing import sha256_file

TFLITE_IDENTIFIER = b"TFL3"

# TensorType enum of the TFLite schema (schema.fbs), for readable dtypes.
_TENSOR_TYPES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
    7: "int16", 8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64",
    13: "resource", 14: "variant", 15: "uint32", 16: "uint16", 17: "int4",
}


@dataclass(frozen=True)
class TensorSpec:
    """An input or output tensor: name, shape, dtype and (for quantized tensors) scale/zero point."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    quant_scale: tuple[float, ...] = ()
    quant_zero_point: tuple[int, ...] = ()

    @property
    def quantized(self) -> bool:
        return bool(self.quant_scale)


@dataclass(frozen=True)
class ModelArtifact:
    """A validated model file."""

    path: Path
    sha256: str
    size_bytes: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    op_counts: dict[str, int] = field(default_factory=dict)
    subgraphs: int = 1
    description: str = ""

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def quantized(self) -> bool:
        """True when any input or output tensor is quantized (int8/uint8 with scales)."""
        return any(t.quantized for t in self.inputs + self.outputs)

    @property
    def op_total(self) -> int:
        return sum(self.op_counts.values())


@functools.lru_cache(maxsize=1)
def _schema() -> object:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # tflite-runtime has no schema module
        return None
    return schema


NOT_FOUND = "file not found"


def check_file(path: Path) -> None:
    """Raise :class:`ModelError` unless ``path`` is a readable regular file.

    Checked without reading a byte of anything else: a FIFO would block the reader, a directory or a
    symlink loop would surface as an OS error far from the suite line that named it.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        why = f"{NOT_FOUND} (a symlink to a missing target)" if path.is_symlink() else NOT_FOUND
        raise ModelError(path, why, hint="check the suite's `path` or run `harness zoo fetch`") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ModelError(path, "symlink loop (the link resolves back to itself)",
                             hint="point `path` at the .tflite file itself") from None
        raise ModelError(path, f"cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise ModelError(path, "is a directory, not a model file", hint="name the .tflite file inside it")
    if not stat.S_ISREG(mode):
        raise ModelError(path, "not a regular file (a FIFO, socket or device)", hint="copy the model to a file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ModelError(path, f"cannot read: {exc.strerror or exc}", hint="check the file's permissions") from None


def _read_header(path: Path) -> bytes:
    check_file(path)
    try:
        with open(path, "rb") as fh:
            return fh.read(8)
    except OSError as exc:
        raise ModelError(path, f"cannot read: {exc.strerror}") from exc


def _tensor_spec(schema: object, tensor: object) -> TensorSpec:
    q = tensor.quantization  # type: ignore[attr-defined]
    scale = tuple(float(x) for x in (q.scale if q is not None and q.scale is not None else ()))
    zero = tuple(int(x) for x in (q.zeroPoint if q is not None and q.zeroPoint is not None else ()))
    name = tensor.name.decode("utf-8", "replace") if isinstance(tensor.name, bytes) else str(tensor.name)  # type: ignore[attr-defined]
    shape = tuple(int(x) for x in (tensor.shape if tensor.shape is not None else ()))  # type: ignore[attr-defined]
    return TensorSpec(name, shape, _TENSOR_TYPES.get(int(tensor.type), str(tensor.type)), scale, zero)  # type: ignore[attr-defined]


def _inspect_flatbuffer(path: Path, data: bytes) -> tuple[tuple, tuple, dict[str, int], int, str]:
    schema = _schema()
    if schema is None:
        return (), (), {}, 1, ""
    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)  # type: ignore[attr-defined]
        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}  # type: ignore[attr-defined]
        counts: Counter[str] = Counter()
        for sg in model.subgraphs or ():
            for op in sg.operators or ():
                oc = model.operatorCodes[op.opcodeIndex]
                code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
                if code == schema.BuiltinOperator.CUSTOM:  # type: ignore[attr-defined]
                    custom = oc.customCode.decode("utf-8", "replace") if oc.customCode else "?"
                    counts[f"CUSTOM:{custom}"] += 1
                else:
                    counts[names.get(code, f"OP_{code}")] += 1
        main = model.subgraphs[0]
        inputs = tuple(_tensor_spec(schema, main.tensors[i]) for i in main.inputs)
        outputs = tuple(_tensor_spec(schema, main.tensors[i]) for i in main.outputs)
        desc = model.description.decode("utf-8", "replace") if model.description else ""
        return inputs, outputs, dict(counts), len(model.subgraphs), desc
    except Exception as exc:  # noqa: BLE001 - any parse failure means a corrupt flatbuffer
        raise ModelError(path, f"corrupt TFLite flatbuffer ({type(exc).__name__}: {exc})",
                         hint="the file may be truncated; fetch it again") from exc


def _runtime_check(path: Path, data: bytes) -> None:
    """Let the runtime's flatbuffer verifier judge the file (no tensors allocated, no delegate)."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter, OpResolverType  # type: ignore[no-redef]
        except ImportError:
            return
    try:
        Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    except (ValueError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ModelError(path, f"rejected by the LiteRT runtime: {reason}") from exc


def load_model(path: str | Path, *, runtime_check: bool = True) -> ModelArtifact:
    """Validate ``path`` and describe it; raise :class:`ModelError` naming the file and the reason."""
    path = Path(path)
    header = _read_header(path)
    if len(header) < 8:
        raise ModelError(path, f"too short to be a TFLite model ({len(header)} bytes)")
    if header[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(
            path,
            f"not a TFLite flatbuffer (file identifier {header[4:8]!r}, expected {TFLITE_IDENTIFIER!r})",
            hint="convert the model to .tflite with the LiteRT converter",
        )
    data = path.read_bytes()
    inputs, outputs, ops, subgraphs, desc = _inspect_flatbuffer(path, data)
    if runtime_check:
        _runtime_check(path, data)
    return ModelArtifact(
        path=path.resolve(),
        sha256=sha256_file(path),
        size_bytes=len(data),
        inputs=inputs,
        outputs=outputs,
        op_counts=ops,
        subgraphs=subgraphs,
        description=desc,
    )
