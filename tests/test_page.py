"""The service's web page in a real headless browser (Debian's chromium + chromedriver, driven by selenium):
pick a user, see the history, the top-K and SIGMA's interests; one screenshot is saved. Skips where no browser is."""

from __future__ import annotations

import shutil
import socket
import threading
import time

import pytest

selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
CHROMIUM, DRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("no chromium/chromedriver on this machine (apt-get install chromium chromium-driver)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from sigmarec.serve.app import RecommendRequest, create_app  # noqa: E402

from conftest import train_tiny  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("page")
    train_tiny("sigma", tmp, users=100, hidden_size=16, n_interests=4)
    app = create_app(tmp / "run", device="cpu")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app.state.service
    srv.should_exit = True
    thread.join(10)


def test_the_page_recommends_for_a_user_and_shows_interests(server, tmp_path):
    url, service = server
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    try:
        driver.get(url)
        user = service.users(limit=1)[0]
        driver.find_element(By.ID, "user").send_keys(user)
        k = driver.find_element(By.ID, "k")
        k.clear()
        k.send_keys("7")
        driver.find_element(By.ID, "go").click()
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#recs li")) == 7)
        wait.until(lambda d: "%" in d.find_element(By.ID, "interests").text)
        shown = [li.get_attribute("data-item") for li in driver.find_elements(By.CSS_SELECTOR, "#recs li")]
        expected = [x.item for x in service.recommend([RecommendRequest(user=user, k=7)])[0].items]
        assert shown == expected
        assert len(driver.find_elements(By.CSS_SELECTOR, "#hist li")) == len(service.user(user)["history"])
        assert driver.find_element(By.ID, "error").text == ""
        shot = tmp_path / "page.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        driver.quit()
