"""Cleaning keeps the text a person reads and drops markup and site chrome."""

from scalinglab.data.clean import brown_detokenize, gcide_entries, html_to_text, pod_to_text


def test_html_to_text_drops_navigation_and_keeps_pre():
    html = """<html><head><title>T</title><style>p{}</style></head><body>
    <div class="navheader"><a href="x">Prev</a> Next</div>
    <div class="sect1"><h2>Locks &amp; keys</h2><p>Rows are   locked
    when <code>FOR UPDATE</code> is used.</p><pre>SELECT 1;
  SELECT 2;</pre></div><div class="sphinxsidebar"><div>Search</div></div></body></html>"""
    text = html_to_text(html)
    assert text == "Locks & keys\n\nRows are locked when FOR UPDATE is used.\n\nSELECT 1;\n  SELECT 2;"


def test_pod_to_text():
    pod = "=head1 NAME\n\nperlfoo - B<bold> and C<< $x->y >> see L<perlsyn|perlsyn/Loops>\n\n=cut\n"
    assert pod_to_text(pod) == "NAME\n\nperlfoo - bold and $x->y see perlsyn/Loops"


def test_gcide_entries_strip_editorial_tags():
    raw = ('00-database-info\n   header\nAbase \\A*base"\\, v. t.\n   To lower; to {depress}.\n      [1913 Webster]\n'
           'Abash \\A*bash"\\, v. t.\n   To confuse.\n   [1913 Webster]\n')
    assert gcide_entries(raw) == ["Abase, v. t.\n   To lower; to depress.", "Abash, v. t.\n   To confuse."]


def test_brown_detokenize():
    tagged = "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, didn't/md* it/pps ?/.\n"
    assert brown_detokenize(tagged) == 'The jury said "no evidence", didn\'t it?'
