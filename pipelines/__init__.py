"""KFP v2 pipelines. Each module compiles itself (`python pipelines/NAME.py out.yaml`) and runs locally."""
