# chromium: Debian's headless browser for the report page tests (tests/client/test_html_chromium.py
# opens the HTML of `evalstream report --html` and reads its screenshots); fonts-dejavu-core is the
# font matplotlib's SVG text names. Sourced by scripts/install-tools.sh.
APT_PACKAGES+=(chromium fonts-dejavu-core)

tool_chromium() {
    command -v chromium >/dev/null || { echo "install-tools: chromium missing" >&2; return 1; }
}
