"""Irodori training: data, discriminator, losses, the GAN loop, synthetic characters, evaluation."""
