"""Errors of the tuning verbs: for end users, each says which command fixes it."""

from __future__ import annotations

from pathlib import Path

from runtime.errors import SelfieTvmError


class MissingRecordsError(SelfieTvmError):
    """A tuned build was asked for, but there are no tuning records to build it from."""

    def __init__(self, model: str, records: Path | None) -> None:
        self.model = model
        self.records = records
        where = f"in {records}" if records is not None else "given"
        super().__init__(
            f"no tuning records for {model} {where}: tune it first with `selfie-tvm tune --model {model}`, "
            f"or point `selfie-tvm compile --tuned --records DIR` at existing records")


class NoRecordsForTargetError(SelfieTvmError):
    """No committed or earlier tuning records match this target's vector ISA."""

    def __init__(self, model: str, isa: str, available: list[str]) -> None:
        self.isa = isa
        others = (f" (records exist for {', '.join(available)}, which this CPU cannot use as its own)"
                  if available else "")
        super().__init__(
            f"no tuning records for {isa} CPUs{others}: tune here with `selfie-tvm tune --model {model}` "
            f"(records go to results/tuning/{isa}/), or build for a level that has records with "
            "`selfie-tvm compile --tuned --portable`")


class TuningBudgetError(SelfieTvmError):
    """The trials asked for cannot give every kernel without a record its first batch."""


class FarmError(SelfieTvmError):
    """The RPC tracker or the devices behind it cannot measure (unreachable, no device, all lost)."""


class NoDeviceError(FarmError):
    """The tracker has no device of the key (never had, or every one of them went)."""


class DeviceUnresponsiveError(Exception):
    """One device did not answer its RPC handshake in time: measure on another (not a FarmError,
    which stops the run)."""


class NoKernelMatchedError(SelfieTvmError):
    """`--only` named prefixes that no tuning task of the model starts with: nothing to tune. A task is a kernel,
    or with `--module-equality anchor-block` the group of kernels sharing an anchor block, named after one of
    them."""

    def __init__(self, prefixes: list[str], kernels: list[str]) -> None:
        self.prefixes = prefixes
        shown = ", ".join(kernels[:12]) + (f" and {len(kernels) - 12} more" if len(kernels) > 12 else "")
        super().__init__(f"--only {' '.join(prefixes)}: no kernel of this model starts with that; its {len(kernels)} "
                         f"tuning tasks are {shown} (its tuning statistics list them all)")
