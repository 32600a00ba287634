"""What searches over the builder's stages: the accuracy budget, and the near ties that decide it."""
