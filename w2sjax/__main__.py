from w2sjax.cli import console

console()
