"""The CDVAE family (Xie et al. 2022): model, decoder, property head, type decoding and sampling, protocols,
configs, training glue and checkpoints."""
