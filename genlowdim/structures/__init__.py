"""Crystal structures below the models and the metrics: structure I/O (``io``), the dataset registry
(``registry``), preprocessed dataset records and their cache (``datasets``), the resumable batch writer
(``batches``), a user's structures imported as a dataset (``importing``, its command in ``import_cli``) and
dataset folders outside the registry (``folders``). Imports only ``genlowdim.runtime``, ``genlowdim.config``
and ``genlowdim.errors`` of the package (and its version string).
"""
