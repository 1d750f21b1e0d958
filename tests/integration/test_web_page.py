"""The web page in a real browser: Debian's chromium, headless, driven by selenium through
Debian's chromium-driver (`make test` installs both where it can; nothing downloads a browser).
Type a sentence, see the nearest clips, play one."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import CLASS_NAMES

from anybind.api import embed, index
from anybind.config import config_from_dict
from anybind.recipes.train import train
from anybind.serve.run import build_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="no chromium + chromium-driver here (`make test` installs them with apt when root)",
)
RATE = 8000


def tone(label: int, seed: int) -> np.ndarray:
    """A quarter second at a pitch per class, with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(RATE // 4) / RATE
    return (0.5 * np.sin(2 * np.pi * (300 + 400 * label) * t)
            + 0.02 * rng.normal(size=t.size)).astype(np.float32)  # fmt: skip


def audio_config(manifest: Path) -> dict:
    source = {"type": "manifest", "path": str(manifest),
              "columns": {"audio": "audio", "text": "caption"}}  # fmt: skip
    return {
        "modalities": {
            "audio": {
                "options": {
                    "sample_rate": RATE,
                    "max_seconds": 0.25,
                    "n_mels": 16,
                    "frames": 16,
                    "n_fft": 128,
                    "hop_length": 64,
                },  # fmt: skip
                "encoder": {"type": "audio_cnn", "width": 8},
            },
            "text": {
                "encoder": {
                    "type": "text_bytes",
                    "width": 16,
                    "layers": 1,
                    "heads": 2,
                    "max_bytes": 24,
                }
            },  # fmt: skip
        },
        "space": {"dim": 16},
        "data": {"class_names": CLASS_NAMES, "train": [source], "eval": []},
        "optim": {"lr": 0.003, "steps": 60, "batch_size": 32, "warmup_steps": 2},
        "train": {"checkpoint_every": 60, "log_every": 10},
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    import uvicorn

    root = tmp_path_factory.mktemp("page")
    (root / "wav").mkdir()
    rows = []
    for i in range(64):
        y = i % len(CLASS_NAMES)
        soundfile.write(root / "wav" / f"{i}.wav", tone(y, i), RATE)
        rows.append({"id": f"c{i}", "audio": f"wav/{i}.wav", "caption": f"a sound of "
                     f"{CLASS_NAMES[y]}", "label": y})  # fmt: skip
    (root / "clips.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    config = config_from_dict(audio_config(root / "clips.jsonl"))
    train(config, root / "run", progress=False)
    embed(root / "run", config.data.train, root / "emb")
    index(root / "emb")
    app = build_app(root / "run", root / "emb")
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:  # readiness: the flag uvicorn sets once it is bound
        thread.join(0.05)
        assert thread.is_alive()
    yield f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}"
    srv.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--autoplay-policy=no-user-gesture-required", "--mute-audio"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@needs_browser
@pytest.mark.slow
def test_type_a_sentence_see_the_clips_and_play_one(server, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server + "/")
    box = browser.find_element(By.ID, "text")
    box.send_keys("a sound of two")
    browser.find_element(By.ID, "go").click()
    wait = WebDriverWait(browser, 30)
    wait.until(
        ec.presence_of_element_located((By.CSS_SELECTOR, 'section[data-modality="audio"] audio'))
    )
    cards = browser.find_elements(By.CSS_SELECTOR, 'section[data-modality="audio"] .hit')
    assert len(cards) == 8  # the page asks for k = 8
    assert sum("two" in c.text for c in cards) >= 6, [c.text for c in cards]
    players = browser.find_elements(By.CSS_SELECTOR, 'section[data-modality="audio"] audio')
    browser.execute_script("arguments[0].play();", players[0])
    wait.until(lambda d: d.execute_script(
        "const a = arguments[0]; return a.readyState >= 2 && a.currentTime > 0;", players[0]
    ))  # fmt: skip
    duration = browser.execute_script("return arguments[0].duration;", players[0])
    assert duration == pytest.approx(0.25, abs=0.01)  # the stored clip, played from /items
    assert browser.find_element(By.ID, "error").text == ""


@needs_browser
@pytest.mark.slow
def test_the_page_shows_a_bad_request_s_message(server, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server + "/")
    browser.find_element(By.ID, "go").click()  # an empty sentence
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "error").text)
    assert "empty text" in browser.find_element(By.ID, "error").text
