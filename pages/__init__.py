"""The cockpit's pages (Streamlit scripts run by app.py's navigation) and what they share."""
