"""Crystal structures below the models and the metrics: structure I/O (``io``), the dataset registry
(``registry``), preprocessed dataset records and their cache (``datasets``) and the resumable batch writer
(``batches``). Imports only ``genlowdim.runtime`` and ``genlowdim.config`` of the package.
"""
