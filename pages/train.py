import streamlit as st

st.title("Train")
st.info("This screen is being built.")
