import streamlit as st

st.title("Monitor")
st.info("This screen is being built.")
