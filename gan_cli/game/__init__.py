"""What Algorithm 1 plays: the losses, the networks, their updates and optimizers, the average of G."""
