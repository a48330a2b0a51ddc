import streamlit as st

st.title("Runs")
st.info("This screen is being built.")
