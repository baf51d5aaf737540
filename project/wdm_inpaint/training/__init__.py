"""Training: configs, the generic trainer and its task interface, the diffusion task, checkpoints and logging.

* :mod:`~wdm_inpaint.training.config`: typed run configs (``TrainerConfig``, ``TrainConfig``) and YAML loading.
* :mod:`~wdm_inpaint.training.task`: the ``TrainingTask`` interface the trainer drives.
* :mod:`~wdm_inpaint.training.trainer`: the generic, resumable ``Trainer``.
* :mod:`~wdm_inpaint.training.wdm_task`: the diffusion-model task (all modes).
* :mod:`~wdm_inpaint.training.launch`: run-folder / resume rules and DDP start-up shared by training commands.
* :mod:`~wdm_inpaint.training.data`, :mod:`~wdm_inpaint.training.data_order`: datasets and the resumable order.
* :mod:`~wdm_inpaint.training.checkpointing`, :mod:`~wdm_inpaint.training.ema`,
  :mod:`~wdm_inpaint.training.lr_schedule`, :mod:`~wdm_inpaint.training.logging_tb`,
  :mod:`~wdm_inpaint.training.distributed`, :mod:`~wdm_inpaint.training.init_from`: the parts.
"""
