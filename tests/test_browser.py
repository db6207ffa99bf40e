"""The explorer in a real browser (issue 26): a notebook using the ipywidgets explorer, served by Voilà on 127.0.0.1 and driven by
headless Chromium through Selenium. The page loads without JavaScript errors, moving the slider changes the image, and a screenshot
is kept in `.artifacts/` (or $PXP_ARTIFACTS). Skipped where Voilà, Selenium or Chromium and its driver are not installed
(Debian: `apt-get install chromium chromium-driver`; `pip install voila selenium`)."""
import json, os, shutil, socket, subprocess, sys, time
from pathlib import Path
import pytest

pytest.importorskip('voila'); pytest.importorskip('selenium')
CHROME, DRIVER = shutil.which('chromium') or shutil.which('chromium-browser'), shutil.which('chromedriver')
if not (CHROME and DRIVER): pytest.skip('needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)', allow_module_level=True)
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[1]
CELLS = ["import torch, torch.nn as nn\nfrom pixelperception.explorer import MoXIExplorer\nfrom pixelperception.models.maskers import PatchMasker",
         "torch.manual_seed(0)\n"
         "model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()\n"
         "ex = MoXIExplorer(model, torch.randn(1, 3, 32, 32), PatchMasker(4), vocab=['cat', 'dog', 'fox'])\n"
         "ex.show(static=False)"]

def notebook(path:Path) -> Path:
    cells = [dict(cell_type='code', execution_count=None, id=f'c{i}', metadata={}, outputs=[], source=s) for i, s in enumerate(CELLS)]
    path.write_text(json.dumps(dict(cells=cells, metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')),
                                    nbformat=4, nbformat_minor=5)))
    return path

def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.fixture
def voila(tmp_path):
    "Voilà serving the explorer notebook on 127.0.0.1 (its kernel sees this checkout's package, with matplotlib's inline backend)"
    nb, port = notebook(tmp_path/'explorer.ipynb'), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ('MPLBACKEND', 'IN_TEST')}
    env['PYTHONPATH'] = os.pathsep.join([str(ROOT), env.get('PYTHONPATH', '')])
    log = open(tmp_path/'voila.log', 'w')
    p = subprocess.Popen([sys.executable, '-m', 'voila', str(nb), '--no-browser', f'--port={port}', '--Voila.ip=127.0.0.1', '--show_tracebacks=True'],
                         cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(120):
            try: socket.create_connection(('127.0.0.1', port), timeout=1).close(); break
            except OSError: time.sleep(0.5)
        yield f'http://127.0.0.1:{port}/', tmp_path/'voila.log'
    finally:
        p.terminate(); p.wait(30); log.close()

def browser():
    o = webdriver.ChromeOptions()
    o.binary_location = CHROME
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=1100,1000',
              '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'): o.add_argument(a)   # loopback only
    o.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=o)

def plot_src(d) -> str:
    "The data URL of the explorer's figure (the last image in the widget's output)"
    imgs = d.find_elements(By.CSS_SELECTOR, '.widget-output img, .jp-OutputArea-output img')
    return imgs[-1].get_attribute('src') if imgs else None

def test_explorer_in_a_browser(voila):
    url, log = voila
    out = Path(os.environ.get('PXP_ARTIFACTS', ROOT/'.artifacts')); out.mkdir(parents=True, exist_ok=True)
    d = browser()
    try:
        d.get(url)
        wait = WebDriverWait(d, 180)
        wait.until(lambda d: plot_src(d))                                              # the kernel ran the notebook and drew the figure
        before = plot_src(d)
        slider = d.find_element(By.CSS_SELECTOR, '.widget-slider .noUi-handle, .widget-slider [role=slider]')
        k = lambda: float(slider.get_attribute('aria-valuenow'))
        assert k() == 1
        slider.click(); slider.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)           # k: 1 -> 3 revealed patches
        wait.until(lambda d: plot_src(d) not in (None, before))
        assert k() == 3
        d.save_screenshot(str(out/'explorer_browser.png'))
        local = lambda e: e['source'] != 'network' or e['message'].startswith('http://127.0.0.1')   # offline: a CDN's stylesheet (icons) may fail
        errors = [e for e in d.get_log('browser') if e['level'] == 'SEVERE' and local(e)]
        assert not errors, errors                                                      # no JavaScript error, nothing local missing
    except Exception:
        print(log.read_text()[-3000:]); raise
    finally:
        d.quit()
    assert (out/'explorer_browser.png').stat().st_size > 10_000
