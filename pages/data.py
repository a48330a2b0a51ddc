import streamlit as st

st.title("Data")
st.info("This screen is being built.")
