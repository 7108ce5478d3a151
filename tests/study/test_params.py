"""study.params: the chapters' common parameters, checked one way, with one-line errors."""
import pytest

from autobuild_lib.study.params import check_common


def test_good_parameters_pass_and_unset_ones_are_not_checked():
    check_common(profile="smoke", dataset="mini-ofa", seed=0, seeds=[0, 1, 2], data_dir="data/released",
                 space="mbv3", spaces=["mbv3", "pn"])
    check_common()


@pytest.mark.parametrize("kwargs, message", [
    ({"profile": "huge"}, "profile must be one of"),
    ({"dataset": "imagenet"}, "dataset must be one of"),
    ({"dataset": "mini-ofa", "datasets": ("mini",)}, r"dataset must be one of \['mini'\]"),
    ({"seed": -1}, "seed must be a non-negative int"),
    ({"seed": True}, "seed must be a non-negative int"),
    ({"seeds": []}, "seeds must be a non-empty list"),
    ({"seeds": [0, "1"]}, "seeds must be a non-empty list"),
    ({"seeds": [1, 1]}, "seeds must be distinct"),
    ({"data_dir": ""}, "data_dir must be a path string"),
    ({"space": "resnet"}, "space must be one of"),
    ({"spaces": ["mbv3", "mbv3"]}, "spaces must be a non-empty list of distinct names"),
])
def test_each_bad_parameter_gets_a_one_line_error(kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        check_common(**kwargs)
    assert "\n" not in str(err.value)


def test_label_equations_are_parsed_checked_and_distinct():
    from autobuild_lib.study.params import parse_equations

    assert [e.text for e in parse_equations(["acc", "acc/latency_cpu"])] == ["acc", "acc/latency_cpu"]
    for bad, message in ((["acc", "acc"], "distinct"), ([], "non-empty"), (["acc*flops"], "may use only"),
                         (["__import__('os')"], "not allowed")):
        with pytest.raises(ValueError, match=message):
            parse_equations(bad)
