"""Fault-injection toolkit: a seeded nemesis over real processes, random interpreter programs with the
model predicting their effect, and checkers for step side files and set histories."""

from pyrestate.testing.faults.history import (
    SetHistory,
    SetReport,
    StepReport,
    analyse_steps,
    check_set,
    read_side_file,
    side_record,
)
from pyrestate.testing.faults.nemesis import FAULTS, Fault, FaultEvent, Nemesis, Target, run_with_nemesis
from pyrestate.testing.faults.programs import (
    GeneratorConfig,
    Model,
    Submission,
    count_commands,
    generate_workload,
    object_name,
    predict,
)

__all__ = [
    "FAULTS",
    "Fault",
    "FaultEvent",
    "GeneratorConfig",
    "Model",
    "Nemesis",
    "SetHistory",
    "SetReport",
    "StepReport",
    "Submission",
    "Target",
    "analyse_steps",
    "check_set",
    "count_commands",
    "generate_workload",
    "object_name",
    "predict",
    "read_side_file",
    "run_with_nemesis",
    "side_record",
]
