"""Small helpers every stage shares, one of each: atomic writes, output folders that keep earlier results,
reading UTF-8 text files, progress bars (tqdm), the global rank, Markdown tables. Like `sinktrain.model`, any
stage may import them."""
