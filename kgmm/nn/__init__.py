"""Model parts as plain ``torch.nn.Module``s, one file each: relational GNN encoders (``rgcn``), knowledge
graph embeddings (``kge``), text (``text``); vision and fusion come with the multimodal issue."""
