"""``flctl coordinator|selector|aggregator|devices``: one module per role process."""
