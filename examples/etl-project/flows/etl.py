"""The entry file of the example bundle: a flow that imports its project's code."""
from orders.steps import extract, load

if __name__ == "__main__":
    load(extract())
