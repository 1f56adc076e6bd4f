"""Run the live denoising pipeline: ``python run_pipeline.py --config configs/default.yaml [--set k=v ...]``
(the same as ``stbn run``; pipeline/run.py)."""

from pipeline.run import main

if __name__ == "__main__":
    raise SystemExit(main())
