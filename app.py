"""Momento's cockpit: `streamlit run app.py` (or `momento cockpit`).

One navigation over the six panels; the sidebar's global filters are drawn here, once per
run, bound to the URL so every page sees the same view and a link shares it.
"""

import streamlit as st

from pages import cache, ui

st.set_page_config(layout="wide", page_title="Momento", page_icon=":material/bolt:")
ui.require_login()  # off loopback: nothing renders for a viewer the reverse proxy did not sign in

PAGES = {
    "Business": [
        st.Page("pages/executive.py", title="Executive", icon=":material/monitoring:", default=True),
        st.Page("pages/journeys.py", title="Journeys", icon=":material/route:"),
        st.Page("pages/experiments.py", title="Experiments", icon=":material/science:"),
        st.Page("pages/policy_lab.py", title="Policy lab", icon=":material/model_training:"),
    ],
    "Operations": [
        st.Page("pages/engine_health.py", title="Engine health", icon=":material/speed:"),
        st.Page("pages/governance.py", title="Governance", icon=":material/policy:"),
        st.Page("pages/alerts.py", title="Alerts", icon=":material/notifications:"),
    ],
}

page = st.navigation(PAGES)
cache.new_run()
st.sidebar.caption("Momento · real-time personalisation cockpit")
ui.sidebar_filters()
page.run()
