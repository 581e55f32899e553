"""Reading N from `accelerate launch --cpu --num_processes N` (the end-to-end run is in test_training.py)."""

import pytest

from safeeraser.unlearn.launch import requested_cpu_processes

CPU_ENV = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            [
                "/venv/bin/python",
                "/venv/bin/accelerate",
                "launch",
                "--num_processes",
                "2",
                "--cpu",
                "-m",
                "safeeraser",
                "unlearn",
            ],
            2,
        ),
        (["/venv/bin/python", "/venv/bin/accelerate", "launch", "--cpu", "--num-processes=4", "-m", "safeeraser"], 4),
        (
            [
                "python",
                "-m",
                "accelerate.commands.launch",
                "--cpu",
                "--num_processes",
                "3",
                "/src/safeeraser/__main__.py",
            ],
            3,
        ),
        # a --num_processes after the script belongs to the script, not to the launcher
        (["/venv/bin/accelerate", "launch", "--cpu", "-m", "safeeraser", "--num_processes", "2"], 1),
        (
            ["/venv/bin/accelerate", "launch", "--cpu", "-m", "safeeraser", "unlearn"],
            1,
        ),  # N from a config file: unknown
        (["/usr/bin/bash", "run.sh", "--num_processes", "2"], 1),  # not accelerate
    ],
)
def test_reads_n_from_the_launcher_command_line(argv, expected):
    assert requested_cpu_processes(argv, CPU_ENV) == expected


@pytest.mark.parametrize(
    "env",
    [
        {},  # not launched by accelerate at all
        {"ACCELERATE_USE_CPU": "False", "MASTER_ADDR": "127.0.0.1"},  # a GPU launch
        {"ACCELERATE_USE_CPU": "True"},  # --num_processes 1: no MASTER_ADDR
        {**CPU_ENV, "WORLD_SIZE": "2", "RANK": "1"},  # already a rank (torchrun, MPI, or our own relaunch)
        {**CPU_ENV, "PMI_SIZE": "2"},
    ],
)
def test_no_relaunch_outside_the_single_process_cpu_case(env):
    argv = ["/venv/bin/accelerate", "launch", "--num_processes", "2", "--cpu", "-m", "safeeraser", "unlearn"]
    assert requested_cpu_processes(argv, env) == 1
