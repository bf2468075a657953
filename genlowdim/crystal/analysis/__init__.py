"""Research analysis of a trained crystal model: latent union of subspaces, Jacobian ranks, editing,
memorisation, their run and figures."""
