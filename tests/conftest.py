"""Test-session setup: XLA's backend optimisation level 0 for every test and the processes they
start. The suite is dominated by compiling many small programs once each; level 0 compiles them
about a third faster (20.7 s -> 13.6 s for a meta-gradient), and the numbers tests compare are the
same to their tolerances. Benchmarks and real runs keep XLA's default. The `slow` marker goes on
the tests named in SLOW."""

import os

import pytest

if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

# Tests that take over ~20 s each on 2 CPU cores (`pytest --durations=30 -n 2` on a quiet machine),
# and, unmeasured, those that start several JAX processes or a Ray instance. They carry the `slow`
# marker (pyproject.toml): `pytest -m "not slow"` is the quick loop, `pytest` runs everything.
# Kept here, in one list, rather than as decorators across the files; tests/test_cli.py checks that
# every name still exists.
SLOW = {
    "test_envs_brax.py": (
        "test_two_episodes_per_task_with_the_done_flag",
        "test_two_gravities_give_different_trajectories_and_episodes_end_by_convention",
        "test_cheetah_direction_and_velocity_rewards_by_hand",
    ),
    "test_eval_bench.py": (
        "test_meta_gradient_row_matches_a_central_finite_difference",
        "test_grus_only_reference_equals_the_learned_transforms_state_update",
    ),
    "test_eval_ppo.py": (
        "test_ppo_learns_inverted_pendulum",
        "test_per_module_optimizer_moves_only_its_module",
        "test_ppo_loss_equals_brax_ppo_loss_on_the_same_batch",
    ),
    "test_eval_study.py": ("test_resel_cell_that_diverges_keeps_its_evaluations",),
    "test_eval_workers.py": (
        "test_two_local_workers_write_what_one_process_writes",
        "test_ray_tasks_write_what_one_process_writes",
        "test_two_processes_shard_each_cells_seeds_and_write_once",
    ),
    "test_meta_train.py": (
        "test_sharded_meta_gradient_equals_single_device",
        "test_meta_gradient_matches_the_chain_rule_in_float64",
        "test_evaluate_chooses_on_tuning_seeds_and_reports_fresh_ones",
    ),
    "test_meta_train_distributed.py": (
        "test_two_processes_match_one_and_a_killed_run_resumes_with_one",
    ),
    "test_runtime.py": (
        "test_cli_ctrl_c_then_resume_equals_the_uninterrupted_run",
        "test_ppo_agent_reproduces_make_train_exactly",
    ),
    "test_resel_buffer.py": ("test_ring_evicts_overwritten_trajectories_only",),
    "test_resel_losses.py": (
        "test_packed_losses_equal_per_trajectory_losses",
        "test_discrete_losses_packed_equal_per_trajectory_and_target_by_hand",
        "test_one_policy_forward_serves_targets_and_policy_gradient",
    ),
    "test_resel_networks.py": (
        "test_conv_and_state_never_mix_neighbouring_trajectories",
        "test_scan_gradients_equal_autodiff_of_a_python_loop",
        "test_packed_sequence_equals_stepwise_acting",
        "test_mamba_packing_equals_separate_runs",
    ),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of SLOW (every parametrization of each) `slow`."""
    for item in items:
        name = getattr(item, "originalname", item.name)
        if name in SLOW.get(item.path.name, ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module: one xdist worker runs many modules,
    and their accumulated executables (each its own memory maps) crashed XLA's compiler late in
    the suite (a segfault in backend_compile_and_load, at a varying test)."""
    yield
    import jax

    jax.clear_caches()
