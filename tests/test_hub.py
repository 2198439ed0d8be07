"""deit.hub: official weights by name, downloaded from a local HTTP server (nothing leaves it)."""

import hashlib
import http.server
import threading

import pytest
import torch

from deit import hub
from deit.checkpoint import CheckpointError
from deit.cli import main
from deit.inference import load
from deit.models import create_model


class Server:
    """A local HTTP server: ``files[path] = bytes``; ``lie`` announces more bytes than sent."""

    def __init__(self):
        self.files, self.hits, self.lie = {}, [], False
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.hits.append(self.path)
                body = owner.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) * (2 if owner.lie else 1)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def official(tmp_path, server, monkeypatch):
    """A small official-layout DeiT served as ``deit_test`` (hash in its name, as upstream)."""
    torch.manual_seed(0)
    model = create_model(
        "deit_tiny_distilled_patch16_224", num_classes=1000, embed_dim=64, depth=1, num_heads=1
    )
    torch.save({"model": model.state_dict()}, tmp_path / "w.pth")
    body = (tmp_path / "w.pth").read_bytes()
    name = f"deit_test-{hashlib.sha256(body).hexdigest()[:8]}.pth"
    server.files["/" + name] = body
    monkeypatch.setitem(hub.OFFICIAL, "deit_test", f"{server.url}/{name}")
    monkeypatch.setenv("DEIT_WEIGHTS", str(tmp_path / "cache"))
    return tmp_path / "cache" / name, body


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_download_once_checked_then_cached(official, server):
    dest, body = official
    assert hub.fetch("deit_test", progress=False) == dest and dest.read_bytes() == body
    assert hub.fetch("deit_test", progress=False) == dest
    assert len(server.hits) == 1
    model, preprocess, classes = load("deit_test")
    assert model.distilled and preprocess.size == 224 and len(classes) == 1000


def test_corrupt_download_is_never_used_and_the_next_try_starts_clean(official, server):
    dest, body = official
    path = next(iter(server.files))
    server.files[path] = body[:-1] + bytes([body[-1] ^ 1])
    with pytest.raises(CheckpointError, match="SHA-256") as err:
        hub.fetch("deit_test", progress=False)
    assert f"fetch {hub.OFFICIAL['deit_test']} by hand and put it at {dest}" in str(err.value)
    assert "\n" not in str(err.value) and leftovers(dest.parent) == []
    server.files[path] = body
    assert hub.fetch("deit_test", progress=False).read_bytes() == body


def test_partial_download_is_deleted(official, server):
    dest, _ = official
    server.lie = True  # Content-Length twice the body: the connection ends early
    with pytest.raises(CheckpointError, match="incomplete|Connection|closed|Remote"):
        hub.fetch("deit_test", progress=False)
    assert leftovers(dest.parent) == []


def test_offline_and_no_download_say_where_to_put_the_file(official, server, capsys):
    dest, _ = official
    with pytest.raises(CheckpointError, match="downloading is off") as err:
        hub.fetch("deit_test", download=False)
    assert str(dest) in str(err.value) and hub.OFFICIAL["deit_test"] in str(err.value)
    server.httpd.shutdown()
    server.httpd.server_close()
    (dest.parent.parent / "x.png").write_bytes(b"")
    assert main(["predict", "--checkpoint", "deit_test", str(dest.parent.parent / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot download deit_test" in err[0] and str(dest) in err[0]


def test_unknown_names_and_official_hashes():
    with pytest.raises(CheckpointError, match="known: deit_tiny_patch16_224"):
        hub.fetch("deit_huge_patch16_224")
    assert hub.expected_hash(hub.OFFICIAL["deit_tiny_distilled_patch16_224"]) == "b40b3cf7"
    assert all(len(hub.expected_hash(url)) == 8 for url in hub.OFFICIAL.values())


def test_finetune_reads_an_official_name(official):
    from deit.pretrained import read_pretrained

    state, arch = read_pretrained("deit_test")
    assert arch["distilled"] and arch["num_classes"] == 1000 and "dist_token" in state
