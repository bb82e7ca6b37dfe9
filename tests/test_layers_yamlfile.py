"""read_yaml_file: the three ways a user-edited YAML file fails, each one RuleError naming the file."""

from __future__ import annotations

import pytest

from layers.errors import RuleError
from layers.yamlfile import read_yaml_file


def test_reads_a_document(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("survey_date: 2024-12-31\nconstruction: ['0701', '1001']\nname: 样例县\n", encoding="utf-8")
    doc = read_yaml_file(path, "rules")
    assert doc["construction"] == ["0701", "1001"] and doc["name"] == "样例县"
    (tmp_path / "empty.yaml").write_text("", encoding="utf-8")
    assert read_yaml_file(tmp_path / "empty.yaml", "rules") is None


@pytest.mark.parametrize("content, words", [
    (None, "rules file '{p}' does not exist; the default is X"),
    ("名称: 样例县\n".encode("gbk"), "rules file '{p}' cannot be read as UTF-8 text"),
    (b"judgement: [\n", "rules file '{p}' cannot be read as YAML (not valid YAML)"),
])
def test_failures_name_the_file_and_the_remedy(tmp_path, content, words):
    path = tmp_path / "rules.yaml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RuleError) as info:
        read_yaml_file(path, "rules", missing_hint="the default is X")
    assert words.format(p=path) in str(info.value)
    if content is not None and b"[" not in content:
        assert "save it as UTF-8" in str(info.value)
