"""Run under torchrun (2 processes): set up a Trainer while another run takes the folder name between
the naming and the making of the folder (on rank 0), and write each rank's run folder to OUT.rank."""

import sys
from pathlib import Path

import yolov7lib.engine.trainer as trainer_module
from yolov7lib.engine.distributed import cleanup_distributed

data, project, out = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
real = trainer_module.create_run_dir


def another_run_takes_the_name(*args, **kwargs):
    (project / "exp").mkdir(parents=True)  # the other run's folder, made while this one set up
    return real(*args, **kwargs)


trainer_module.create_run_dir = another_run_takes_the_name
options = trainer_module.TrainOptions(
    data=data, model="yolov7-tiny-cpu", img=64, batch=4, epochs=1, workers=0, device="cpu", noval=True,
    project=str(project), progress=False, plots=False,
)  # fmt: skip
trainer = trainer_module.Trainer(options)
Path(f"{out}.{trainer.ctx.rank}").write_text(str(trainer.run_dir))
cleanup_distributed()
