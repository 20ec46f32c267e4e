"""The packet engine: sans-I/O protocol cores, I/O ports and the node programs that compose them."""
