import math

import pytest

from ohgw_bench.textfmt import fixed, num, pct, replace_block


def test_missing_values_and_infinities():
    for x in (None, math.nan, math.inf, "n/a"):
        assert fixed(x) == num(x) == pct(x) == "–"
    assert pct(-math.inf, signed=True) == "−∞" and pct(math.inf, signed=True) == "+∞"
    assert pct(0.1234) == "12.3 %" and pct(0.1234, 2, signed=True) == "+12.34 %" and pct(-0.05, signed=True) == "-5.0 %"
    assert fixed(1 / 3, 2) == "0.33" and num(1234.5) == "1.23e+03" and num(3, "{:.0f}") == "3"


def test_replace_block_keeps_the_text_around_and_names_a_missing_marker():
    text = "head\n<!-- b -->\nold\nlines\n<!-- e -->\ntail\n"
    assert replace_block(text, "<!-- b -->", "<!-- e -->", "new") == "head\n<!-- b -->\nnew\n<!-- e -->\ntail\n"
    with pytest.raises(ValueError, match="<!-- e -->"):
        replace_block("head\n<!-- b -->\n", "<!-- b -->", "<!-- e -->", "new")
