"""edge-sdk: on-device facial behaviour analysis (AUs, expression, valence/arousal, PSPI).

Data path: ``capture`` -> ``face`` -> ``model`` -> ``backend`` -> ``pipeline`` -> ``store``.
This package is the device runtime: it needs numpy, opencv-python-headless and one inference
runtime, and never imports torch, NNCF, TensorFlow or the workstation ``export`` package.
"""

__version__ = "0.1.0"
