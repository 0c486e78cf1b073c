"""A backbone small enough for in-process end-to-end trainings, shared by the tests that stand it in for
`architectures.select`."""
import torch


class TinyBackbone(torch.nn.Module):
    """Average-pools the image to 4×4 and embeds it linearly; returns (embedding, features) like the backbones."""

    def __init__(self, embed_dim):
        super().__init__()
        self.last_linear = torch.nn.Linear(48, embed_dim)

    def forward(self, images):
        pooled = torch.nn.functional.adaptive_avg_pool2d(images, 4).flatten(1)
        return torch.nn.functional.normalize(self.last_linear(pooled), dim=-1), (pooled, None)
