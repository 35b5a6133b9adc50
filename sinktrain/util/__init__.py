"""Small helpers every stage shares, one of each: atomic writes, progress bars (tqdm), the global rank,
Markdown tables. Like `sinktrain.model`, any stage may import them."""
