"""Training, framework-neutral: the run configuration (``config``), the run folder with its atomic
checkpoints (``runs``), the PNG figures (``plots``) and the instance/panoptic scores and pictures
(``instance_report``). ``segmentation_{torch,tf}/train.py`` drive it.
"""
