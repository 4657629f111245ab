"""Turn the raw files of each corpus into plain documents: HTML to text, POD and dictionary markup stripped,
tagged tokens joined back into sentences. Light on purpose: the text should read as it was written."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table", "pre", "blockquote", "section",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "article", "header", "footer", "figure", "caption",
}
_SKIP_TAGS = {"script", "style", "head", "noscript", "svg", "button", "form", "nav"}
# Site chrome of Sphinx (Django docs) and DocBook (PostgreSQL docs) pages: navigation, sidebars, search.
_SKIP_MARKERS = re.compile(
    r"\b(navheader|navfooter|sphinxsidebar|sidebar|global-nav|searchbox|related|breadcrumbs|nav|hd|ft|"
    r"headerlink|footer)\b"
)
_VOID_TAGS = {"br", "img", "meta", "link", "input", "hr", "area", "base", "col", "embed", "source", "wbr"}


class _TextExtractor(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0
        self.pre_depth = 0

    def handle_starttag(self, tag, attrs):
        if tag in _VOID_TAGS:
            if tag in ("br", "hr") and not self.skip_depth:
                self.parts.append("\n")
            return
        if self.skip_depth:
            self.skip_depth += 1
            return
        a = dict(attrs)
        marks = " ".join(filter(None, [a.get("class"), a.get("id"), a.get("role") == "navigation" and "nav"]))
        if tag in _SKIP_TAGS or (marks and _SKIP_MARKERS.search(marks)):
            self.skip_depth = 1
            return
        if tag == "pre":
            self.pre_depth += 1
        if tag in _BLOCK_TAGS:
            self.parts.append("\n\n" if tag in ("p", "pre", "h1", "h2", "h3", "h4", "h5", "h6") else "\n")

    def handle_endtag(self, tag):
        if tag in _VOID_TAGS:
            return
        if self.skip_depth:
            self.skip_depth -= 1
            return
        if tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data):
        if self.skip_depth:
            return
        self.parts.append(data if self.pre_depth else re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return tidy("".join(parser.parts))


def tidy(text: str) -> str:
    """Strip trailing spaces, drop the spaces HTML leaves at line starts, keep at most one blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


_POD_ESCAPES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/"}


def pod_to_text(pod: str) -> str:
    """Perl's POD: headings kept as text, formatting codes (B<..>, C<<..>>, L<..|..>) reduced to their text."""
    out = []
    for line in pod.splitlines():
        m = re.match(r"=(head\d|item)\s*(.*)", line)
        if m:
            out.append(m.group(2))
        elif re.match(r"=(pod|cut|over|back|begin|end|for|encoding)\b", line):
            out.append("")
        else:
            out.append(line)
    text = "\n".join(out)
    text = re.sub(r"E<(\w+)>", lambda m: _POD_ESCAPES.get(m.group(1), m.group(0)), text)
    text = re.sub(r"[BCIFSXZ]<<+ (.*?) >>+", r"\1", text)
    for _ in range(3):  # nested codes, innermost first
        text = re.sub(r"L<(?:[^<>|]*\|)?([^<>]*)>", r"\1", text)
        text = re.sub(r"[BCIFSXZ]<([^<>]*)>", r"\1", text)
    return tidy(text)


def gcide_entries(dictionary: str) -> list[str]:
    """Entries of the GCIDE dictd file: an entry starts at a non-indented line. Editorial tags like
    [1913 Webster], the \\pronunciation\\ field and {cross-reference} braces are removed."""
    text = re.sub(r"^\s*\[[^\]\n]*(Webster|WordNet|PJC|Century|RN|Chambers|MW)[^\]\n]*\]\s*$", "", dictionary, flags=re.M)
    text = re.sub(r"\\[^\\\n]{1,80}\\", "", text)
    text = re.sub(r" +([,.])", r"\1", text)
    text = text.replace("{", "").replace("}", "")
    entries, cur = [], []
    for line in text.splitlines():
        if line and not line[0].isspace() and cur:
            entries.append("\n".join(cur))
            cur = []
        cur.append(line)
    if cur:
        entries.append("\n".join(cur))
    return [tidy(e) for e in entries if not e.startswith("00-database") and e.strip()]


def group_documents(pieces: list[str], target_chars: int) -> list[str]:
    """Join consecutive short pieces (dictionary entries) into documents of about target_chars."""
    docs, cur, size = [], [], 0
    for p in pieces:
        cur.append(p)
        size += len(p)
        if size >= target_chars:
            docs.append("\n\n".join(cur))
            cur, size = [], 0
    if cur:
        docs.append("\n\n".join(cur))
    return docs


def brown_detokenize(tagged: str) -> str:
    """The Brown corpus as word/TAG tokens -> running text with normal spacing and quotes."""
    paras = []
    for para in re.split(r"\n\s*\n", tagged):
        words = [tok.rsplit("/", 1)[0] for tok in para.split() if "/" in tok]
        if not words:
            continue
        s = " ".join(words)
        s = s.replace("``", '"').replace("''", '"')
        s = re.sub(r" ([.,;:!?)\]])", r"\1", s)
        s = re.sub(r"([(\[]) ", r"\1", s)
        s = re.sub(r'" (.*?) "', r'"\1"', s)
        s = re.sub(r" (n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1", s)
        paras.append(s)
    return "\n".join(paras)
