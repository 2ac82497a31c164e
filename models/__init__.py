"""Pure nn.Modules: (B, T, F) features + padding mask -> (B, T, C) logits. No files, no Ray."""
