"""Run the live denoising pipeline: ``python run_pipeline.py --config configs/default.yaml [--set k=v ...]
[--cluster ADDRESS]`` (the same as ``stbn run``; pipeline/run.py, cluster/streams.py)."""

from cluster.cli import run_pipeline_main

if __name__ == "__main__":
    raise SystemExit(run_pipeline_main())
