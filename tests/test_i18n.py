"""One language at a time: the catalogues cover every marked string, Vietnamese unless English is asked."""

from __future__ import annotations

import pytest

from lgsp.core import i18n
from lgsp.core.i18n_catalogues import extract, placeholders, problems, read
from tests.cli_support import run_cli


def test_every_marked_string_has_both_translations_with_the_same_placeholders() -> None:
    """A string marked in the source (`_`, `t`, `Text`, `N_`, a template's `{% trans %}`) but missing,
    empty, fuzzy or with other placeholders in a catalogue fails here; `make messages` adds it."""
    assert len(extract()) > 150  # the extractor really finds the marked strings
    found = problems()
    assert not found, "run `make messages` and translate:\n" + "\n".join(found[:50])


def test_the_check_fails_on_a_missing_or_wrong_translation(tmp_path, monkeypatch) -> None:
    """The check itself can fail: a new marked string, and a translation that drops a placeholder."""
    import shutil

    from lgsp.core.i18n_catalogues import SOURCE_FOLDERS, repository_root, update

    root = tmp_path / "repo"
    for folder in SOURCE_FOLDERS:
        (root / folder).mkdir(parents=True)
    (root / "cli" / "x.py").write_text('from lgsp.cli.messages import t\nprint(t("sent packet {id}", id=1))\n'
                                       'print(t("a brand new message"))\n', encoding="utf-8")
    shutil.copytree(repository_root() / "core" / "locale", root / "core" / "locale")
    update(root)
    found = problems(root)
    assert found == ["vi: untranslated 'a brand new message' (cli/x.py:3)"]
    catalog = read("vi", root)
    catalog["sent packet {id}"].string = "đã gửi gói tin"
    from lgsp.core.i18n_catalogues import write

    write(catalog, "vi", root)
    assert any("placeholders differ in 'sent packet {id}'" in line for line in problems(root))


def test_placeholders_are_format_names_and_template_names() -> None:
    assert placeholders("unit {unit}: {status!r} {n:>3}") == {"{unit}", "{status!r}", "{n:>3}"}
    assert placeholders("%(user)s signed in") == {"%(user)s"}


def test_vietnamese_is_the_default_and_english_is_asked_for(monkeypatch) -> None:
    monkeypatch.delenv("LGSP_LANG", raising=False)
    assert i18n.current() == "vi"
    assert i18n._("no notices") == "không có thông báo nào"
    monkeypatch.setenv("LGSP_LANG", "en_GB.UTF-8")
    assert i18n._("no notices") == "no notices"
    with i18n.speaking("vi"):
        assert i18n._("sent packet {id}", id="P1") == "đã gửi gói tin P1"
    assert i18n.current() == "en"


def test_a_text_is_translated_when_read_and_stays_a_string() -> None:
    text = i18n.Text("sent packet {id}", id="P1")
    assert text == "sent packet P1" and isinstance(text, str)
    assert text.render("vi") == "đã gửi gói tin P1"
    assert text.render("en") == "sent packet P1"
    assert i18n.render("no notices", "vi") == "không có thông báo nào"
    assert i18n.render("nothing to translate here", "vi") == "nothing to translate here"


@pytest.mark.parametrize(("header", "lang"), [
    ("", "vi"), ("en", "en"), ("en-US,en;q=0.9", "en"), ("vi-VN,vi;q=0.9,en;q=0.8", "vi"),
    ("fr, en;q=0.5", "en"), ("fr", "vi"), ("vi;q=0.2, en;q=0.8", "en"), ("en;q=0", "vi"), ("en;q=abc", "vi"),
])
def test_accept_language_picks_the_first_language_lgsp_speaks(header: str, lang: str) -> None:
    assert i18n.from_accept_language(header) == lang


def test_an_unknown_lgsp_lang_is_refused_naming_the_languages() -> None:
    result = run_cli("--help", lang="fr")
    assert result.returncode == 2
    assert "'fr'" in result.stderr and "vi" in result.stderr and "en" in result.stderr


def _help_texts(lang: str, monkeypatch) -> list[tuple[str, str]]:
    """(command path, text) for every description, group title and argument help of the CLI."""
    import argparse

    from lgsp.cli.args import argparse_speaks_our_language
    from lgsp.cli.main import build_parser

    monkeypatch.setenv("LGSP_LANG", lang)
    out: list[tuple[str, str]] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        if parser.description:
            out.append((path, parser.description))
        for group in parser._action_groups:
            out.append((path, str(group.title)))
        for action in parser._actions:
            if action.help and action.help != argparse.SUPPRESS:
                out.append((f"{path} {'/'.join(action.option_strings) or action.dest}", str(action.help)))
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    out.append((f"{path} {choice.dest}", str(choice.help)))
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")

    with argparse_speaks_our_language():
        walk(build_parser(), "lgsp")
    return out


def test_the_cli_help_has_no_untranslated_english_by_default(monkeypatch) -> None:
    """Every help text, title and description differs between Vietnamese and English (a text left
    in English, or unmarked, reads the same in both)."""
    english = _help_texts("en", monkeypatch)
    vietnamese = _help_texts("vi", monkeypatch)
    assert len(english) == len(vietnamese) > 300
    same = sorted({f"{where}: {en!r}" for (where, en), (_w, vi) in zip(english, vietnamese, strict=True) if en == vi})
    assert not same, "CLI help not translated:\n" + "\n".join(same)
    helps = dict(vietnamese)
    assert helps["lgsp send --to"] == "mã định danh nơi nhận (lặp lại được)"


def test_the_cli_help_and_argparse_words_are_vietnamese(monkeypatch) -> None:
    monkeypatch.delenv("LGSP_LANG", raising=False)
    result = run_cli("unit", "add", "--help", lang="vi")
    assert result.returncode == 0
    assert result.stdout.startswith("cách dùng: lgsp unit add")
    assert "tùy chọn:" in result.stdout and "hiện trợ giúp này rồi thoát" in result.stdout
    wrong = run_cli("unit", "nothing", lang="vi")
    assert wrong.returncode == 2 and wrong.stderr.startswith("lỗi: ") and "lựa chọn không hợp lệ" in wrong.stderr
    english = run_cli("unit", "add", "--help", lang="en")
    assert english.stdout.startswith("usage: lgsp unit add") and "show this help message and exit" in english.stdout


async def test_problem_details_follow_the_request_language_and_the_code_stays(make_actor) -> None:
    """HTTP problem details: Vietnamese by default, English with Accept-Language: en; same code."""
    from tests.conftest import raw_request

    a = await make_actor("000.00.00.H23")
    _s, _h, vi = await raw_request(a.hub.url, "GET", "/v1/inbox")
    _s, _h, en = await raw_request(a.hub.url, "GET", "/v1/inbox", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert vi["code"] == en["code"] == "auth.missing"
    assert en["detail"] == "header X-LGSP-Key is required"
    assert vi["detail"] == "cần header X-LGSP-Key"


def test_no_vietnamese_entry_is_left_in_english() -> None:
    """A Vietnamese entry equal to its English msgid is only allowed when, placeholders aside, it holds
    nothing but names that stay as they are (a JSON field, a header)."""
    import re

    kept_names = {"deadline", "header", "reason", "HTTP", "sendEdoc", "DocId"}
    catalog = read("vi")
    english = []
    for entry in catalog:
        if entry.id and entry.string == entry.id:
            words = set(re.findall(r"[A-Za-z]{3,}", re.sub(r"\{[^{}]*\}|%\([^)]*\)[sdr]", "", str(entry.id))))
            if words - kept_names:
                english.append(str(entry.id))
    assert not english, f"Vietnamese catalogue entries still in English: {english}"


def test_the_console_pages_speak_vietnamese_by_default() -> None:
    """Every string the console's templates mark has a Vietnamese translation that differs from the English."""
    catalog = read("vi")
    in_templates = {m for m, where in extract().items() if any("/templates/" in w for w in where)}
    assert {"Sign in", "Home", "Packets"} <= in_templates
    same = sorted(m for m in in_templates if catalog.get(m) is None or catalog.get(m).string in ("", m))
    assert not same, same


#: Console templates whose words all go through the catalogues (the rest still show Vietnamese in English).
CONVERTED_TEMPLATES = ("base", "signin", "home", "error", "password", "totp", "units", "traffic", "_unit_filter",
                       "packet", "requests", "request_detail", "request_new", "_fields",
                       "accounts", "unit", "services", "reports", "connections", "audit")


def test_converted_console_templates_hold_no_vietnamese_words_of_their_own() -> None:
    """A converted template writes no Vietnamese outside the catalogues, so an English reader sees none of it
    (the language switch's own "Tiếng Việt" is the one exception: it names the language in that language)."""
    import re
    from pathlib import Path

    vietnamese = re.compile(r"[àáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵ]", re.I)
    folder = Path(__file__).resolve().parent.parent / "adapters" / "console" / "templates"
    found = {}
    for name in CONVERTED_TEMPLATES:
        text = (folder / f"{name}.html").read_text(encoding="utf-8").replace("Tiếng Việt", "")
        lines = [line.strip() for line in text.splitlines() if vietnamese.search(line)]
        if lines:
            found[name] = lines
    assert not found, found


def test_a_config_error_is_vietnamese_by_default_and_keeps_its_key_path_and_line(tmp_path, monkeypatch) -> None:
    from lgsp.core.config import ConfigError, load_config

    path = tmp_path / "cfg.yaml"
    path.write_text("server:\n  host: 127.0.0.1\n  prot: 8080\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    monkeypatch.delenv("LGSP_LANG", raising=False)
    assert [str(i) for i in err.value.issues] == [f"{path}:3: server.prot: khóa không biết (có phải ý bạn là 'port'?)"]
    monkeypatch.setenv("LGSP_LANG", "en")
    assert [str(i) for i in err.value.issues] == [f"{path}:3: server.prot: unknown key (did you mean 'port'?)"]


def test_a_plugin_config_error_is_vietnamese_by_default_and_english_on_request(tmp_path) -> None:
    """A plugin's `lgsp_check_config` message is translated like the core's; key path and line stay."""
    path = tmp_path / "cfg.yaml"
    path.write_text("plugins:\n  enabled: [rest, edxml, national_axis]\nadapters:\n  national_axis:\n"
                    "    system_id: vxp.saas.45\n    secret: axis-vxp\n    agency_code: 000.00.00.H45\n",
                    encoding="utf-8")
    vi = run_cli("config", "check", str(path), lang="vi")
    en = run_cli("config", "check", str(path), lang="en")
    assert vi.returncode == en.returncode == 1
    assert vi.stderr.strip().splitlines() == [
        f"lỗi: {path}:4: adapters.national_axis.endpoint: bắt buộc: URL http(s) của trục, không có query hay "
        "fragment (các thao tác được nối thêm dạng /<operation>)"]
    assert en.stderr.strip().splitlines() == [
        f"error: {path}:4: adapters.national_axis.endpoint: required: the axis's http(s) URL, without query or "
        "fragment (operations are appended as /<operation>)"]


def test_a_text_among_the_values_of_a_message_is_in_the_same_language(monkeypatch) -> None:
    """`_()` renders a `Text` value in the current language (a reason inside a sentence, say)."""
    from lgsp.core.i18n import Text, _, speaking

    monkeypatch.delenv("LGSP_LANG", raising=False)
    reason = Text("the default ({default})", default="allow")
    assert _("{where}: {why}", where="x", why=reason) == "x: mặc định (allow)"
    with speaking("en"):
        assert _("{where}: {why}", where="x", why=reason) == "x: the default (allow)"


def test_an_edxml_library_error_has_a_translated_lead_in_and_its_own_words_as_reason() -> None:
    from lgsp.core.api.edxml import EdxmlInvalid
    from lgsp.plugins.edxml import problem_of

    problem = problem_of(EdxmlInvalid("Unexpected child with tag 'Foo' at position 2", path="/edXML/Header",
                                      rule="edXML.xsd"))
    vi, en = problem.to_dict("vi"), problem.to_dict("en")
    assert vi["code"] == en["code"] == "edxml.invalid"
    assert vi["detail"] == ("bộ kiểm tra edXML từ chối /edXML/Header (quy tắc edXML.xsd); nguyên văn (tiếng Anh): "
                            "Unexpected child with tag 'Foo' at position 2")
    assert en["detail"].startswith("the edXML check refused /edXML/Header (rule edXML.xsd); its words: ")
    assert vi["reason"] == en["reason"] == "Unexpected child with tag 'Foo' at position 2"
    assert vi["path"] == "/edXML/Header" and vi["rule"] == "edXML.xsd"
    bare = problem_of(EdxmlInvalid("too deep")).to_dict("vi")
    assert bare["detail"] == "bộ kiểm tra edXML từ chối gói tin; nguyên văn (tiếng Anh): too deep"


async def test_a_header_check_says_why_in_the_reader_language(make_actor) -> None:
    """A signed-request header that is too long: the whole detail in Vietnamese by default, English on request."""
    from tests.conftest import raw_request

    a = await make_actor("000.00.00.H23")
    headers = {"X-LGSP-Key": "A" * 65}
    _s, _h, vi = await raw_request(a.hub.url, "GET", "/v1/inbox", headers=headers)
    _s, _h, en = await raw_request(a.hub.url, "GET", "/v1/inbox", headers={**headers, "Accept-Language": "en"})
    assert vi["code"] == en["code"] == "auth.missing"
    assert vi["detail"] == "header X-LGSP-Key dài quá 64 ký tự"
    assert en["detail"] == "header X-LGSP-Key is longer than 64 characters"


def test_a_backup_error_speaks_the_cli_language(tmp_path, monkeypatch) -> None:
    from lgsp.core.backup import BackupError
    from lgsp.core.i18n import Text, speaking

    monkeypatch.delenv("LGSP_LANG", raising=False)
    error = BackupError(Text("the backup folder {folder} is not empty; choose an empty folder", folder=tmp_path))
    assert str(error) == f"thư mục sao lưu {tmp_path} đã có dữ liệu; hãy chọn một thư mục trống"
    with speaking("en"):
        assert str(error) == f"the backup folder {tmp_path} is not empty; choose an empty folder"
