"""The benchmark harness: a plan of tasks (metric x workload x backend x round), run
through pyperf workers (or in-process for VM boots and density), written to a run dir."""
