"""Physics of crystals with a universal machine-learned potential (CHGNet, weights shipped in its wheel).

- ``potential``: CHGNet loaded offline; energies (eV), forces (eV/Å) and stresses (eV/Å³) of many
  structures in one batched call
- ``relax``: cell + position relaxation of many structures in lockstep (ASE FIRE or BFGS, one batched
  potential call per optimiser step), with the RMSD between a structure and its relaxed form
- ``workers``: forked worker processes of one torch thread each that share the relaxation batches
- ``folder``: ``genlowdim relax``'s resumable output folder
- ``reference``: relaxed energies of a dataset's entries by composition, cached by content hash
- ``stability``: RMSD-to-relaxed statistics, energy W1, energy above the lowest known polymorph and a
  S.U.N.-style rate
- ``ranking``: structure-prediction candidates ordered by relaxed energy, or by arrangement (energy decides
  among the most symmetric candidates, each arrangement kept together); the model's order kept within a
  margin

The package sits beside ``genlowdim.metrics``: it imports only ``structures``, ``runtime``, ``config`` and
``errors``. Nothing heavy is imported here.
"""
