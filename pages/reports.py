import streamlit as st

st.title("Reports")
st.info("This screen is being built.")
